"""Necks for dense prediction on diffusion features.

``DiffSimpleFPN`` (a ViTDet-style simple feature pyramid built from one U-Net block) and
``DiffLN2d`` (channels-first LayerNorm for its ``norm_cfg``) are registered in mmengine's
root ``MODELS``, so mmdet and mmseg configs build them by ``type=``. They use
``mmcv.cnn`` (no compiled ops): without mmcv this package registers nothing.
"""
import importlib.util

__all__ = []

if importlib.util.find_spec('mmcv') is not None:
    from .simple_fpn import DiffLN2d, DiffSimpleFPN  # noqa: F401

    __all__ += ['DiffLN2d', 'DiffSimpleFPN']
