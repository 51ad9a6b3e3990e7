"""Pooled classification heads on diffusion features: linear, MLP and CNN.

They are mmpretrain ``ClsHead`` subclasses (loss, ``predict``, top-k) registered in mmengine's
root registry, and take the backbone's tuple directly (no neck): the head picks one output
(``feat_index=-1``) or several, whose pooled features are concatenated.
"""
import torch
from mmpretrain.models.heads import ClsHead
from torch import nn

from .layers import (as_size, as_tuple, check_channels, make_activation, resize_to,
                     select_features)


class DiffusionClsHead(ClsHead):
    """A ``ClsHead`` that reads chosen outputs of a diffusion backbone.

    Args:
        in_channels (int | Sequence[int]): channels of each selected output (for a backbone
            with ``fuse_timesteps='concat'``: block channels x number of timesteps, i.e. the
            backbone's ``out_channels``).
        feat_index (int | Sequence[int]): which outputs of the backbone tuple to read.
        **kwargs: ``ClsHead`` arguments (``loss``, ``topk``, ``cal_acc``, ``init_cfg``).
    """

    def __init__(self, in_channels, feat_index=-1, **kwargs):
        super().__init__(**kwargs)
        self.feat_index = tuple(int(i) for i in as_tuple(feat_index))
        if not self.feat_index:
            raise ValueError('feat_index is empty: select at least one backbone output')
        self.in_channels = tuple(
            int(c) for c in as_tuple(in_channels, len(self.feat_index), 'in_channels'))

    def _inputs(self, feats):
        """The selected backbone outputs, channel-checked: list of ``(B, C_i, H_i, W_i)``."""
        xs = select_features(feats, self.feat_index)
        for x, channels, index in zip(xs, self.in_channels, self.feat_index):
            check_channels(x, channels, f'{type(self).__name__} (backbone output {index})')
        return xs


def pool_and_concat(xs, pool_size):
    """``[(B, C_i, H_i, W_i)]`` -> ``(B, sum_i C_i * k_h * k_w)``: adaptive average pooling to
    ``pool_size``, flattened (channel-major), concatenated."""
    return torch.cat([nn.functional.adaptive_avg_pool2d(x, pool_size).flatten(1) for x in xs],
                     dim=1)


def _check_classes(num_classes):
    if num_classes <= 0:
        raise ValueError(f'num_classes={num_classes} must be a positive integer')
    return int(num_classes)


class PooledLinearHead(DiffusionClsHead):
    """Adaptive average pooling to ``pool_size x pool_size``, flatten, linear classifier.

    The paper's linear probe: block 24 (1024 channels) pooled to 2x2 -> 4096-d -> linear.

    Args:
        num_classes (int): number of classes.
        in_channels (int | Sequence[int]): channels of each selected output.
        feat_index (int | Sequence[int]): backbone outputs to read; several are pooled and
            concatenated.
        pool_size (int | tuple[int, int]): pooled spatial size ``k`` (2 in the paper).
        dropout (float): dropout before the classifier.
        init_cfg (dict, optional): default: N(0, 0.01) linear weights, as mmpretrain's
            ``LinearClsHead``.

    Shapes:
        input: the backbone tuple, selected outputs ``(B, C_i, H_i, W_i)``;
        ``pre_logits``: ``(B, sum_i C_i * k * k)``; output ``(B, num_classes)``.
    """

    def __init__(self,
                 num_classes,
                 in_channels,
                 feat_index=-1,
                 pool_size=2,
                 dropout=0.0,
                 init_cfg=dict(type='Normal', layer='Linear', std=0.01),
                 **kwargs):
        super().__init__(in_channels, feat_index, init_cfg=init_cfg, **kwargs)
        self.num_classes = _check_classes(num_classes)
        self.pool_size = as_size(pool_size)
        self.feature_dims = sum(self.in_channels) * self.pool_size[0] * self.pool_size[1]
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.feature_dims, self.num_classes)

    def pre_logits(self, feats):
        """Backbone tuple -> ``(B, feature_dims)`` pooled, flattened, concatenated."""
        return pool_and_concat(self._inputs(feats), self.pool_size)

    def forward(self, feats):
        """Backbone tuple -> ``(B, num_classes)`` scores."""
        return self.fc(self.dropout(self.pre_logits(feats)))


class MLPHead(DiffusionClsHead):
    """Adaptive pooling, flatten, then an MLP (Linear-activation per hidden layer, Linear).

    Args:
        num_classes (int): number of classes.
        in_channels (int | Sequence[int]): channels of each selected output.
        feat_index (int | Sequence[int]): backbone outputs to read.
        pool_size (int | tuple[int, int]): pooled spatial size (default 1: global average).
        hidden_dims (Sequence[int]): widths of the hidden layers.
        act (str): 'relu', 'gelu' or 'silu'.
        dropout (float): dropout after each hidden layer.

    Shapes:
        selected outputs ``(B, C_i, H_i, W_i)`` -> ``pre_logits`` ``(B, hidden_dims[-1])``
        -> ``(B, num_classes)``.
    """

    def __init__(self,
                 num_classes,
                 in_channels,
                 feat_index=-1,
                 pool_size=1,
                 hidden_dims=(1024, ),
                 act='relu',
                 dropout=0.0,
                 init_cfg=None,
                 **kwargs):
        super().__init__(in_channels, feat_index, init_cfg=init_cfg, **kwargs)
        self.num_classes = _check_classes(num_classes)
        self.pool_size = as_size(pool_size)
        hidden_dims = tuple(int(d) for d in as_tuple(hidden_dims))
        layers = []
        width = sum(self.in_channels) * self.pool_size[0] * self.pool_size[1]
        for dims in hidden_dims:
            layers += [nn.Linear(width, dims), make_activation(act), nn.Dropout(dropout)]
            width = dims
        self.mlp = nn.Sequential(*layers)
        self.fc = nn.Linear(width, self.num_classes)

    def pre_logits(self, feats):
        """Backbone tuple -> ``(B, hidden_dims[-1])``."""
        return self.mlp(pool_and_concat(self._inputs(feats), self.pool_size))

    def forward(self, feats):
        return self.fc(self.pre_logits(feats))


class CNNHead(DiffusionClsHead):
    """A few conv-BN-ReLU layers on the feature map, then pooling and a linear classifier.

    Several selected outputs are first brought to the smallest selected spatial size (area
    averaging) and concatenated along channels.

    Args:
        num_classes (int): number of classes.
        in_channels (int | Sequence[int]): channels of each selected output.
        feat_index (int | Sequence[int]): backbone outputs to read.
        channels (Sequence[int]): output channels of each conv-BN-ReLU layer.
        kernel_size (int): convolution kernel size (padding keeps the size).
        pool_size (int | tuple[int, int]): pooled size before the classifier (1: global).
        dropout (float): dropout before the classifier.
        bn_momentum (float | None): BatchNorm momentum; None averages all batches seen
            (useful for very short runs, whose running statistics would lag).

    Shapes:
        selected outputs ``(B, C_i, H_i, W_i)`` -> ``(B, sum C_i, min H, min W)`` -> convs ->
        ``pre_logits`` ``(B, channels[-1] * k * k)`` -> ``(B, num_classes)``.
    """

    def __init__(self,
                 num_classes,
                 in_channels,
                 feat_index=-1,
                 channels=(256, 256),
                 kernel_size=3,
                 pool_size=1,
                 dropout=0.0,
                 bn_momentum=0.1,
                 init_cfg=dict(type='Kaiming', layer='Conv2d', mode='fan_out',
                               nonlinearity='relu'),
                 **kwargs):
        super().__init__(in_channels, feat_index, init_cfg=init_cfg, **kwargs)
        self.num_classes = _check_classes(num_classes)
        layers, width = [], sum(self.in_channels)
        for out in as_tuple(channels):
            layers += [nn.Conv2d(width, out, kernel_size, padding=kernel_size // 2, bias=False),
                       nn.BatchNorm2d(out, momentum=bn_momentum), nn.ReLU(inplace=True)]
            width = out
        self.convs = nn.Sequential(*layers)
        self.pool_size = as_size(pool_size)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width * self.pool_size[0] * self.pool_size[1], self.num_classes)

    def pre_logits(self, feats):
        """Backbone tuple -> ``(B, channels[-1] * k * k)``."""
        xs = self._inputs(feats)
        size = (min(x.shape[-2] for x in xs), min(x.shape[-1] for x in xs))
        x = torch.cat([resize_to(x, size) for x in xs], dim=1)
        x = nn.functional.adaptive_avg_pool2d(self.convs(x), self.pool_size)
        return x.flatten(1)

    def forward(self, feats):
        return self.fc(self.dropout(self.pre_logits(feats)))
