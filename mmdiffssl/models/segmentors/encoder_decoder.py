"""mmseg's EncoderDecoder whose heads and input padding take their shapes from the backbone."""
from mmseg.models.segmentors import EncoderDecoder

from mmdiffssl.models.derived_shapes import backbone_shapes, derive_segmentor


class DiffEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` that fills its heads' ``in_channels`` and padding from the backbone.

    Same arguments, modes and state dict as mmseg's ``EncoderDecoder``. The backbone config
    is first built on the meta device (no weights read); then, where the config leaves
    them out (absent or None), these are filled in:

    - ``decode_head.in_channels`` and each ``auxiliary_head``'s: the backbone's
      ``out_channels`` at the head's ``in_index`` (a list for a list, an int for an int);
      with a neck, the neck's ``in_channels`` instead (the heads then keep the config's);
    - ``data_preprocessor.size_divisor`` (when no fixed training ``size`` is given) and
      ``data_preprocessor.test_cfg.size_divisor``: the backbone's ``size_divisibility``.

    Given values are compared and a disagreement raises ``ValueError`` naming both
    (padding divisors and a fixed ``size`` may be any multiple of ``size_divisibility``).
    Registered as ``'DiffEncoderDecoder'`` (:mod:`mmdiffssl.registry`).

    Shapes: inputs ``(B, 3, H, W)`` in [-1, 1] after the data preprocessor; outputs as
    ``EncoderDecoder``.
    """

    def __init__(self, backbone, decode_head, neck=None, auxiliary_head=None,
                 data_preprocessor=None, **kwargs):
        shapes = backbone_shapes(backbone)
        if shapes is not None:
            decode_head, neck, auxiliary_head, data_preprocessor = derive_segmentor(
                shapes, decode_head, neck, auxiliary_head, data_preprocessor)
        super().__init__(backbone=backbone, decode_head=decode_head, neck=neck,
                         auxiliary_head=auxiliary_head, data_preprocessor=data_preprocessor,
                         **kwargs)
