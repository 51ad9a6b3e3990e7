"""Detectors on diffusion backbones: ``DiffMaskRCNN`` (:mod:`.mask_rcnn`, needs mmdet).

Found by ``type='DiffMaskRCNN'`` from configs of any scope (:mod:`mmdiffssl.registry`);
importing this package imports no mmdet.
"""
