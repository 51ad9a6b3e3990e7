"""A ViTDet-style simple feature pyramid from a single diffusion U-Net block.

Li et al., "Exploring Plain Vision Transformer Backbones for Object Detection" (ViTDet,
ECCV 2022) build a detection pyramid from the last map of a plain backbone alone:
deconvolutions for the finer levels, identity at the map's own stride, max-pooling for the
coarser ones, then FPN's lateral 1x1 and output 3x3 convolutions (without the top-down
path). ``DiffSimpleFPN`` does the same from one ``ADMBackbone`` block, e.g. block 24 of
adm-256-uncond (1024 channels, stride 16) -> strides 4, 8, 16, 32 (+ 64 for the RPN).
The mmdet 3.3.0 wheel ships no ``projects/`` (where ViTDet's ``SimpleFPN`` lives), hence
this module; the name differs from any mmdet/mmseg registration.
"""
from collections.abc import Sequence

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule

#: scale factor -> channel divisor of the rescaled map (as ViTDet: C/4, C/2, C, C)
_CHANNEL_DIVISORS = {4.0: 4, 2.0: 2, 1.0: 1, 0.5: 1}


class DiffSimpleFPN(BaseModule):
    """Simple feature pyramid (ViTDet) from one backbone map.

    Args:
        in_channels (int | Sequence[int]): channels of the backbone map. A sequence gives
            every backbone output's channels (``ADMBackbone.out_channels``) and
            ``in_index`` picks the map.
        out_channels (int): channels of every output level (FPN's ``out_channels``).
        num_outs (int): number of outputs; levels beyond ``len(scale_factors)`` are made
            by max-pooling the last one with stride 2 (FPN's extra level for the RPN).
        in_index (int): which backbone output to use.
        scale_factors (Sequence[float]): resolution of each level relative to the map,
            each one of 4, 2, 1, 0.5 (deconv x2 twice, deconv x2, identity, max-pool).
            The default (4, 2, 1, 0.5) turns a stride-16 map into strides 4, 8, 16, 32.
        conv_cfg (dict, optional): conv config of the lateral and output convs.
        norm_cfg (dict, optional): norm of the lateral and output convs and between the
            two deconvolutions of the x4 level, e.g. ``dict(type='DiffLN2d')`` (ViTDet),
            ``dict(type='GN', num_groups=32)`` or ``dict(type='SyncBN')``. None: no norm
            (the convs get biases), as mmdet's FPN.
        act_cfg (dict, optional): activation after the lateral and output convs (None, as
            FPN and ViTDet).
        init_cfg (dict | list[dict], optional): mmengine init config.

    Shapes:
        input: the backbone's tuple of maps; map ``in_index`` is ``(B, C, H, W)``.
        output: tuple of ``num_outs`` maps ``(B, out_channels, H * s, W * s)`` for ``s`` in
        ``scale_factors``, then ``(B, out_channels, ...)`` halved per extra level.
    """

    def __init__(self,
                 in_channels,
                 out_channels=256,
                 num_outs=5,
                 in_index=0,
                 scale_factors=(4.0, 2.0, 1.0, 0.5),
                 conv_cfg=None,
                 norm_cfg=None,
                 act_cfg=None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if isinstance(in_channels, Sequence):
            if not -len(in_channels) <= in_index < len(in_channels):
                raise ValueError(f'in_index={in_index} is outside the {len(in_channels)} '
                                 'backbone outputs given by in_channels')
            in_channels = in_channels[in_index]
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.in_index = int(in_index)
        self.scale_factors = tuple(float(s) for s in scale_factors)
        if not self.scale_factors:
            raise ValueError('scale_factors is empty')
        for scale in self.scale_factors:
            if scale not in _CHANNEL_DIVISORS:
                raise ValueError(f'scale factor {scale} is not one of '
                                 f'{sorted(_CHANNEL_DIVISORS)}')
        if num_outs < len(self.scale_factors):
            raise ValueError(f'num_outs={num_outs} is smaller than the '
                             f'{len(self.scale_factors)} levels of scale_factors')
        for scale in self.scale_factors:
            divisor = _CHANNEL_DIVISORS[scale]
            if self.in_channels % divisor:
                raise ValueError(f'in_channels={self.in_channels} is not divisible by '
                                 f'{divisor} (needed for scale factor {scale})')
        self.num_outs = int(num_outs)

        self.stages = nn.ModuleList()
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        dim = self.in_channels
        for scale in self.scale_factors:
            if scale == 4.0:
                layers = [nn.ConvTranspose2d(dim, dim // 2, 2, stride=2)]
                if norm_cfg is not None:
                    layers.append(build_norm_layer(norm_cfg, dim // 2)[1])
                layers += [nn.GELU(), nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2)]
                stage = nn.Sequential(*layers)
            elif scale == 2.0:
                stage = nn.ConvTranspose2d(dim, dim // 2, 2, stride=2)
            elif scale == 1.0:
                stage = nn.Identity()
            else:
                stage = nn.MaxPool2d(kernel_size=2, stride=2)
            self.stages.append(stage)
            level_channels = dim // _CHANNEL_DIVISORS[scale]
            self.lateral_convs.append(
                ConvModule(level_channels, out_channels, 1, conv_cfg=conv_cfg,
                           norm_cfg=norm_cfg, act_cfg=act_cfg, inplace=False))
            self.fpn_convs.append(
                ConvModule(out_channels, out_channels, 3, padding=1, conv_cfg=conv_cfg,
                           norm_cfg=norm_cfg, act_cfg=act_cfg, inplace=False))

    def forward(self, inputs):
        """Tuple of backbone maps -> tuple of ``num_outs`` pyramid levels, finest first."""
        if not isinstance(inputs, (list, tuple)):
            inputs = (inputs, )
        x = inputs[self.in_index]
        if x.shape[1] != self.in_channels:
            raise ValueError(f'DiffSimpleFPN was built for {self.in_channels} input '
                             f'channels but backbone output {self.in_index} has '
                             f'{x.shape[1]}: set in_channels to the backbone\'s '
                             'out_channels')
        outs = [fpn_conv(lateral(stage(x))) for stage, lateral, fpn_conv in
                zip(self.stages, self.lateral_convs, self.fpn_convs)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
