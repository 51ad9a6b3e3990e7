"""Models: U-Nets, noise, backbones, necks, heads, distillers, pretrainers (registered on import).

Heads and classifiers register only when mmpretrain is installed, necks only with mmcv; the
backbones, the distiller and the pretrainer need torch and mmengine alone.
"""
from . import (backbones, classifiers, detectors, distillers, heads, necks,  # noqa: F401
               pretrainers, segmentors)
from .backbones import ADMBackbone, ShapeSpec
from .distillers import RepFusionDistiller
from .pretrainers import DDPMPretrainer

__all__ = ['ADMBackbone', 'ShapeSpec', 'DDPMPretrainer', 'RepFusionDistiller']
