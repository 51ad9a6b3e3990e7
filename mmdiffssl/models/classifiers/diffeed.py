"""DifFeed: decoder features fed back into the encoder of a frozen diffusion U-Net."""
import torch
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import nn

from mmdiffssl.models.backbones.base import DiffusionBackbone
from mmdiffssl.models.heads.layers import resize_to

PAPER_FEEDBACK_BLOCKS = (21, 24, 27, 30, 33, 36)


def mirror_block(block, num_blocks):
    """The encoder block mirroring decoder block ``block``: ``num_blocks + 1 - block``.

    For adm-256-uncond (37 blocks) this is the paper's ``38 - b`` (21 -> 17, ..., 36 -> 2).
    """
    return num_blocks + 1 - block


class DifFeedBackbone(BaseModule):
    """Two forward passes of a frozen diffusion U-Net with decoder-to-encoder feedback.

    Pass 1 (no gradient) computes the decoder blocks ``feedback_blocks`` at ``(x_t, t)``. Each
    goes through a feedback layer (1x1 conv without bias, BatchNorm, ReLU) to the channels of
    its mirror encoder block ``num_blocks + 1 - b`` (resized when the strides differ). Pass 2
    runs the U-Net again on the SAME ``x_t`` and ``t`` with the feedback added to those
    encoder blocks' outputs (before they are passed on or stored as skips) and returns the
    wrapped backbone's ``blocks``. Both passes go through
    :meth:`ADMBackbone.intermediates`; with ``noise='fresh'`` the noise generators (training and
    evaluation) are rewound before pass 2 so both passes draw the same noise.

    Only the feedback layers train (and the head on top); the U-Net is frozen, but gradients
    flow through pass 2 into the feedback layers. The feedback BatchNorms follow
    ``train()``/``eval()`` like any module (the frozen U-Net stays in eval mode).

    Args:
        backbone (dict | DiffusionBackbone): the wrapped backbone (a family that supports
            injections: ADM); built from a config with ``run_until`` = the deepest feedback
            block (pass 1 runs that far); must be frozen
            (``frozen=True``), its ``blocks`` are what pass 2 returns (paper: 24), its
            ``timesteps`` are used by both passes (paper: 150). 'ensemble' noise is refused
            (the two passes would not see one ``x_t``).
        feedback_blocks (Sequence[int]): decoder blocks fed back (paper: 21, 24, 27, 30,
            33, 36 for adm-256-uncond).
        init_cfg (dict, optional): mmengine init config.

    Shapes:
        input ``(B, 3, H, W)`` in [-1, 1]; output: like the wrapped backbone, one
        ``(B, C_i * T, H / s_i, W / s_i)`` map per block ('concat' fusion).
    """

    def __init__(self, backbone, feedback_blocks=PAPER_FEEDBACK_BLOCKS, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        feedback_blocks = tuple(feedback_blocks)
        if not isinstance(backbone, nn.Module):
            # pass 1 runs up to the deepest feedback block: keep the network that far
            backbone = dict(backbone)
            backbone.setdefault('run_until', max(feedback_blocks, default=None))
            backbone = MODELS.build(backbone)
        if not isinstance(backbone, DiffusionBackbone):
            raise TypeError(f'DifFeedBackbone wraps a diffusion backbone, got '
                            f'{type(backbone).__name__}')
        if not backbone.supports_injections:
            raise backbone.unsupported('DifFeed (feature injections)')
        self.adm = backbone
        if not self.adm.frozen:
            raise ValueError('DifFeed trains only the feedback layers and the head: build the '
                             'wrapped backbone with frozen=True')
        if self.adm.noise.mode == 'ensemble':
            raise ValueError("noise='ensemble' averages several x_t; DifFeed needs one x_t "
                             "seen by both passes: use 'fresh', 'fixed' or 'none'")
        table = self.adm.block_table
        specs = {row.index: row for row in table}
        num_blocks = len(table)
        self.feedback_blocks = table.resolve(feedback_blocks) if feedback_blocks else ()
        if not self.feedback_blocks:
            raise ValueError('feedback_blocks is empty')
        if len(set(self.feedback_blocks)) != len(self.feedback_blocks):
            raise ValueError(f'feedback_blocks {self.feedback_blocks} has duplicates')
        self.target_blocks = tuple(mirror_block(b, num_blocks) for b in self.feedback_blocks)
        layers = []
        for src, dst in zip(self.feedback_blocks, self.target_blocks):
            if src not in specs or specs[src].kind != 'output':
                decoder = [i for i, s in specs.items() if s.kind == 'output']
                raise ValueError(f'feedback block {src} is not a decoder block of this arch '
                                 f'(decoder blocks {decoder[0]}..{decoder[-1]})')
            layers.append(nn.Sequential(
                nn.Conv2d(specs[src].channels, specs[dst].channels, 1, bias=False),
                nn.BatchNorm2d(specs[dst].channels),
                nn.ReLU(inplace=True)))
        self.feedback = nn.ModuleList(layers)
        if max(self.feedback_blocks) > self.adm.run_until:
            raise ValueError(f'feedback block {max(self.feedback_blocks)} is after the wrapped '
                             f'backbone\'s last kept block {self.adm.run_until}: build it with '
                             f'run_until={max(self.feedback_blocks)} (or pass a config)')
        self._target_strides = tuple(specs[dst].stride for dst in self.target_blocks)
        unused = [d for d in self.target_blocks if d > max(self.adm.blocks)]
        if unused:
            raise ValueError(f'feedback into encoder blocks {unused} cannot reach the read-out '
                             f'blocks {self.adm.blocks}: drop their decoder blocks from '
                             'feedback_blocks')

    # ------------------------------------------------------------------ the backbone API
    @property
    def blocks(self):
        """tuple[int]: blocks returned (pass 2)."""
        return self.adm.blocks

    @property
    def timesteps(self):
        return self.adm.timesteps

    @property
    def fuse_timesteps(self):
        return self.adm.fuse_timesteps

    def output_shape(self):
        return self.adm.output_shape()

    def output_names(self):
        return self.adm.output_names()

    @property
    def native_resolution(self):
        return self.adm.native_resolution

    @property
    def size_divisibility(self):
        return self.adm.size_divisibility

    @property
    def out_channels(self):
        return self.adm.out_channels

    @property
    def out_strides(self):
        return self.adm.out_strides

    # ------------------------------------------------------------------ forward
    def feedback_features(self, first, size):
        """Pass-1 features -> injections.

        Args:
            first (dict[int, Tensor]): block -> ``(T, B, C_b, H_b, W_b)`` from pass 1.
            size (tuple[int, int]): input image size ``(H, W)``.

        Returns:
            dict[int, Tensor]: encoder block -> ``(T * B, C_e, H / s_e, W / s_e)``.
        """
        out = {}
        for src, dst, stride, layer in zip(self.feedback_blocks, self.target_blocks,
                                           self._target_strides, self.feedback):
            x = first[src].flatten(0, 1)                  # timesteps outermost, like pass 2
            x = resize_to(x, (size[0] // stride, size[1] // stride))
            out[dst] = layer(x)
        return out

    def intermediates(self, x, keys=None):
        """Both passes; returns pass 2's ``{block: (T, B, C, H_b, W_b)}`` for ``blocks``.

        Args:
            x (Tensor): ``(B, 3, H, W)`` in [-1, 1].
            keys (Tensor, optional): ``(B,)`` image keys for 'fixed' noise.
        """
        noise = self.adm.noise
        state = noise.stream_state() if noise.mode == 'fresh' else None
        with torch.no_grad():
            first = self.adm.intermediates(x, blocks=self.feedback_blocks, keys=keys)
        if state is not None:
            noise.rewind(state)   # pass 2 draws the very noise pass 1 drew
        injections = self.feedback_features(first, x.shape[-2:])
        return self.adm.intermediates(x, injections=injections, keys=keys)

    def forward(self, x):
        """``(B, 3, H, W)`` -> tuple of pass-2 features, fused like the wrapped backbone."""
        feats = self.intermediates(x)
        return tuple(self.adm.fuse(feats[b]) for b in self.adm.blocks)
