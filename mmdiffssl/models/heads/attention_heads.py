"""The paper's attention head and DifFormer: transformers over diffusion-feature tokens.

Both read backbone outputs fused with ``fuse_timesteps='concat'`` (channels of timestep 0,
then timestep 1, ...), split them back into timesteps, turn every (block, timestep) map into
tokens with a per-block pre-layer, and run ONE transformer per timestep (weights shared across
timesteps) over the tokens of all selected blocks plus a zero-initialised CLS token. The CLS
outputs of the timesteps are concatenated and classified by a linear layer.
"""
import torch
from torch import nn

from .layers import TokenPreLayer, TransformerBlock, as_tuple
from .pooled_heads import DiffusionClsHead, _check_classes


class AttentionPoolHead(DiffusionClsHead):
    """Attention pooling of diffusion features (the paper's "attention head").

    Per selected block, a pre-layer: adaptive average pool to ``min(size, pool_size)``,
    LayerNorm over ``(C, h, w)``, 1x1 conv to ``embed_dims``, flatten to tokens. A learned CLS
    token (zero-initialised) is prepended and ``num_layers`` pre-norm ViT blocks (GELU MLP,
    no positional embedding) run on the tokens; the CLS output goes to a linear classifier.
    With several timesteps each one gets its own CLS output (same weights), concatenated.

    Args:
        num_classes (int): number of classes.
        in_channels (int | Sequence[int]): channels of each selected backbone output, i.e.
            block channels x ``num_timesteps`` for a 'concat'-fused backbone.
        in_sizes (int | Sequence): spatial size (int or ``(h, w)``) of each selected output at
            the training input size (e.g. 16 for block 24 of adm-256-uncond at 256x256).
        num_timesteps (int): timesteps fused into each output by 'concat' (1 for 'mean').
        feat_index (int | Sequence[int]): backbone outputs to read.
        embed_dims (int): token width (1024 in the paper).
        num_heads (int): attention heads (8).
        num_layers (int): transformer blocks (2).
        mlp_ratio (float): MLP hidden width / ``embed_dims`` (4).
        pool_size (int): pooled size cap (16).
        qkv_bias (bool): bias of the qkv projection (off, as in the paper's code).
        dropout (float): dropout in the transformer and before the classifier.
        blocks (Sequence[int], optional): U-Net blocks of the backbone outputs (the whole
            tuple, in the backbone's order); recorded, and compared with the backbone's by
            ``DiffSSLClassifier`` (:mod:`mmdiffssl.models.derived_shapes`).
        timesteps (Sequence[int], optional): the backbone's timesteps, likewise.
        init_cfg (dict | list, optional): None keeps PyTorch's default initialisation of the
            linear, conv and LayerNorm layers, as the paper's code does; the CLS token starts
            at zero either way.

    Shapes:
        input: the backbone tuple; selected output i is ``(B, T * C_i, H_i, W_i)``;
        tokens per timestep ``(B * T, 1 + sum_i h_i * w_i, D)``;
        ``pre_logits``: ``(B, T * D)``; output: ``(B, num_classes)``.
    """

    def __init__(self,
                 num_classes,
                 in_channels,
                 in_sizes,
                 num_timesteps=1,
                 feat_index=-1,
                 embed_dims=1024,
                 num_heads=8,
                 num_layers=2,
                 mlp_ratio=4.0,
                 pool_size=16,
                 qkv_bias=False,
                 dropout=0.0,
                 blocks=None,
                 timesteps=None,
                 init_cfg=None,
                 **kwargs):
        super().__init__(in_channels, feat_index, init_cfg=init_cfg, **kwargs)
        self.num_classes = _check_classes(num_classes)
        self.num_timesteps = int(num_timesteps)
        if self.num_timesteps < 1:
            raise ValueError(f'num_timesteps={num_timesteps} must be >= 1')
        self.blocks = None if blocks is None else tuple(int(b) for b in blocks)
        self.timesteps = None if timesteps is None else tuple(int(t) for t in timesteps)
        if self.timesteps is not None and len(self.timesteps) != self.num_timesteps:
            raise ValueError(f'timesteps={self.timesteps} but num_timesteps='
                             f'{self.num_timesteps}')
        self.in_sizes = as_tuple(in_sizes, len(self.feat_index), 'in_sizes')
        self.embed_dims = int(embed_dims)
        pre_layers = []
        for channels, size in zip(self.in_channels, self.in_sizes):
            if channels % self.num_timesteps:
                raise ValueError(f'in_channels={channels} is not divisible by num_timesteps='
                                 f'{self.num_timesteps}: the head splits the concatenated '
                                 'timesteps back (backbone fuse_timesteps="concat")')
            pre_layers.append(TokenPreLayer(channels // self.num_timesteps, size, pool_size,
                                            self.embed_dims))
        self.pre_layers = nn.ModuleList(pre_layers)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        self.layers = nn.Sequential(*[
            TransformerBlock(self.embed_dims, num_heads, mlp_ratio, qkv_bias, dropout)
            for _ in range(num_layers)])
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_timesteps * self.embed_dims, self.num_classes)

    def tokens(self, feats):
        """Backbone tuple -> ``(B * T, N, D)`` block tokens (timesteps outermost), no CLS."""
        tokens = []
        for x, pre_layer in zip(self._inputs(feats), self.pre_layers):
            b, c, h, w = x.shape
            # (B, T * C, H, W) -> (T * B, C, H, W), timestep-major like the backbone's concat.
            x = x.view(b, self.num_timesteps, c // self.num_timesteps, h, w).transpose(0, 1)
            tokens.append(pre_layer(x.reshape(-1, c // self.num_timesteps, h, w)))
        return torch.cat(tokens, dim=1)

    def pre_logits(self, feats):
        """Backbone tuple -> ``(B, T * D)``: the CLS output of each timestep, concatenated."""
        x = self.tokens(feats)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        cls = self.layers(x)[:, 0]                               # (T * B, D)
        return cls.view(self.num_timesteps, -1, self.embed_dims).transpose(0, 1).flatten(1)

    def forward(self, feats):
        """Backbone tuple -> ``(B, num_classes)``."""
        return self.fc(self.dropout(self.pre_logits(feats)))


class DifFormerHead(AttentionPoolHead):
    """DifFormer: the attention head over the tokens of several blocks and timesteps.

    The tokens of every block in ``blocks`` at one timestep form one sequence through a shared
    transformer; the per-timestep CLS outputs are concatenated and classified. The head reads
    the whole backbone tuple, which must come from a backbone with exactly these ``blocks`` and
    ``timesteps`` in the same order and ``fuse_timesteps='concat'``. ``DiffSSLClassifier``
    fills ``blocks``, ``timesteps``, ``in_channels`` and ``in_sizes`` from its backbone when
    the config leaves them out, and raises when given ones disagree
    (:mod:`mmdiffssl.models.derived_shapes`).

    Args:
        num_classes (int): number of classes.
        in_channels (Sequence[int]): the backbone's ``out_channels`` (block channels x T).
        in_sizes (Sequence): spatial size of each block's output at the training input size.
        blocks (Sequence[int]): the backbone's blocks (paper: 19, 24, 30).
        timesteps (Sequence[int]): the backbone's timesteps (paper: 90, 150, 300).
        **kwargs: :class:`AttentionPoolHead` arguments (``embed_dims``, ``num_heads``, ...).

    Shapes:
        input: ``len(blocks)`` maps ``(B, T * C_i, H_i, W_i)``; ``pre_logits`` ``(B, T * D)``;
        output ``(B, num_classes)``.
    """

    #: read by :mod:`mmdiffssl.models.derived_shapes`: the head reads every backbone output
    #: and computes ``feat_index`` and ``num_timesteps`` itself (from blocks and timesteps).
    reads_all_outputs = True
    derived_by_head = ('feat_index', 'num_timesteps')

    def __init__(self, num_classes, in_channels, in_sizes, blocks=(19, 24, 30),
                 timesteps=(90, 150, 300), **kwargs):
        for key in ('feat_index', 'num_timesteps'):
            if key in kwargs:
                raise TypeError(f'DifFormerHead derives {key} from blocks and timesteps; '
                                'do not pass it')
        blocks, timesteps = tuple(blocks), tuple(timesteps)
        super().__init__(num_classes, in_channels, in_sizes, num_timesteps=len(timesteps),
                         feat_index=tuple(range(len(blocks))), blocks=blocks,
                         timesteps=timesteps, **kwargs)

    def _inputs(self, feats):
        n = 1 if torch.is_tensor(feats) else len(feats)
        if n != len(self.blocks):
            raise ValueError(f'DifFormerHead expects one backbone output per block of '
                             f'{self.blocks}, got {n} outputs')
        return super()._inputs(feats)
