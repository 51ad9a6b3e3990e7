"""mmdiffssl: diffusion models as backbones for discriminative vision.

Importing the package registers every mmdiffssl name in mmengine's root registries
(:mod:`mmdiffssl.registry`), where the mmpretrain, mmdet and mmsegmentation registries (its
children) find them by ``type=``; each module is imported when a config first builds it.
The import itself needs only torch and mmengine and imports no optional package.
"""
from .registry import register_all

register_all()

__version__ = '0.1.0'
