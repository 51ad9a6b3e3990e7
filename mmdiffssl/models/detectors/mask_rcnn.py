"""mmdet's Mask R-CNN whose neck and input padding take their shapes from the backbone."""
from mmdet.models.detectors import MaskRCNN

from mmdiffssl.models.derived_shapes import backbone_shapes, derive_detector


class DiffMaskRCNN(MaskRCNN):
    """``MaskRCNN`` that fills its neck's ``in_channels`` and ``pad_size_divisor`` from the
    backbone.

    Same arguments, modes and state dict as mmdet's ``MaskRCNN``. The backbone config is
    first built on the meta device (no weights read); then, where the config leaves them
    out (absent or None), ``neck.in_channels`` (FPN: the backbone's ``out_channels``;
    DiffSimpleFPN: those at its ``in_index``) and ``data_preprocessor.pad_size_divisor``
    (the backbone's ``size_divisibility``: its total downsampling) are filled in. Given
    values are compared and a disagreement raises ``ValueError`` naming both (a
    ``pad_size_divisor`` may be any multiple). Registered as ``'DiffMaskRCNN'``
    (:mod:`mmdiffssl.registry`).

    Shapes: inputs ``(B, 3, H, W)`` in [-1, 1] after the data preprocessor, padded to
    multiples of ``pad_size_divisor``.
    """

    def __init__(self, backbone, neck=None, data_preprocessor=None, **kwargs):
        shapes = backbone_shapes(backbone)
        if shapes is not None:
            neck, data_preprocessor = derive_detector(shapes, neck, data_preprocessor)
        super().__init__(backbone=backbone, neck=neck, data_preprocessor=data_preprocessor,
                         **kwargs)
