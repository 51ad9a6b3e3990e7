"""mmdiffssl: diffusion U-Nets as backbones for discriminative vision.

Importing the package registers its modules in mmengine's root registries, where the
mmpretrain, mmdet and mmsegmentation registries (its children) find them by ``type=``.
It needs only torch and mmengine; modules that use mmcv ops, mmdet or mmseg import them
themselves.
"""
from .utils.compat import allow_mmengine_checkpoints

allow_mmengine_checkpoints()

import importlib.util  # noqa: E402

from . import datasets, engine, models  # noqa: E402,F401  (registers the modules)

if importlib.util.find_spec('mmcv') is not None:  # data transforms build on mmcv's
    from .datasets import transforms  # noqa: F401

__version__ = '0.1.0'
