"""Models: U-Nets, noise, backbones, necks, heads, distillers, pretrainers.

Importing this package imports none of its modules (they need mmengine.model, and heads
need mmpretrain): the names below are imported on first access, and configs build them by
``type=`` through :mod:`mmdiffssl.registry`.
"""
from mmdiffssl.utils.lazy import lazy_attributes

_EXPORTS = {'ADMBackbone': 'backbones', 'ShapeSpec': 'backbones',
            'DDPMPretrainer': 'pretrainers', 'RepFusionDistiller': 'distillers'}
__all__ = list(_EXPORTS)
__getattr__ = lazy_attributes(__name__, _EXPORTS)
