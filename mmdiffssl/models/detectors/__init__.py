"""Detectors on diffusion backbones: ``DiffMaskRCNN`` (registered as ``'DiffMaskRCNN'``).

Registered in mmengine's root ``MODELS`` when mmdet is installed, so configs of any scope
build it by ``type=``. The name is a builder that imports mmdet only when a model is built:
importing this package imports no mmdet.
"""
import importlib.util

from mmengine.registry import MODELS

__all__ = []

if importlib.util.find_spec('mmdet') is not None:

    @MODELS.register_module(name='DiffMaskRCNN')
    def build_diff_mask_rcnn(**kwargs):
        """``DiffMaskRCNN(**kwargs)`` (:class:`.mask_rcnn.DiffMaskRCNN`)."""
        from .mask_rcnn import DiffMaskRCNN
        return DiffMaskRCNN(**kwargs)

    __all__ += ['build_diff_mask_rcnn']
