"""``DiffLN2d``: LayerNorm over the channels of a feature map, for necks' ``norm_cfg``.

Registered as the class itself in mmengine's root ``MODELS`` when ``mmdiffssl`` is imported
(mmcv's ``build_norm_layer`` inspects the registered object as a class); needs only torch.
"""
import torch.nn as nn
from mmengine.registry import MODELS


@MODELS.register_module()
class DiffLN2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map (ViTDet's ``LN2d``).

    Usable as ``norm_cfg=dict(type='DiffLN2d')`` in mmcv's ``build_norm_layer``.
    """
    _abbr_ = 'ln'

    def __init__(self, num_features, eps=1e-6, **kwargs):
        super().__init__(num_features, eps=eps, **kwargs)

    def forward(self, x):
        if x.dim() != 4:
            raise ValueError(f'DiffLN2d expects (B, C, H, W), got shape {tuple(x.shape)}')
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
