"""Models: U-Nets, noise, backbones, necks and heads (registered on import)."""
from . import backbones  # noqa: F401
from .backbones import ADMBackbone, ShapeSpec

__all__ = ['ADMBackbone', 'ShapeSpec']
from . import heads, classifiers  # noqa
from . import necks  # noqa: F401  (DiffSimpleFPN, DiffLN2d; registered only with mmcv)
