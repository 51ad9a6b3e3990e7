"""Necks for dense prediction on diffusion features.

``DiffSimpleFPN`` (a ViTDet-style simple feature pyramid built from one block, uses
``mmcv.cnn``) and ``DiffLN2d`` (channels-first LayerNorm for its ``norm_cfg``, torch only);
both are found by ``type=`` from mmdet and mmseg configs (:mod:`mmdiffssl.registry`).
"""
from mmdiffssl.utils.lazy import lazy_attributes

_EXPORTS = {'DiffSimpleFPN': 'simple_fpn', 'DiffLN2d': 'layer_norm'}
__all__ = list(_EXPORTS)
__getattr__ = lazy_attributes(__name__, _EXPORTS)
