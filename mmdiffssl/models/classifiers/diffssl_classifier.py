"""mmpretrain's ImageClassifier whose head (and neck) take their input shapes from the backbone."""
import contextlib

import torch
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from torch import nn

from mmdiffssl.models.derived_shapes import backbone_shapes, derive_classifier, reports_shapes


class DiffSSLClassifier(ImageClassifier):
    """``ImageClassifier`` that fills its head from the backbone it builds first.

    Same arguments, modes and state dict as mmpretrain's ``ImageClassifier``. The backbone
    is built before the neck and head; then, where the head config leaves them out (absent
    or None), its ``in_channels`` (the backbone's ``out_channels`` at ``feat_index``),
    ``in_sizes`` (``native_resolution // stride``), ``num_timesteps`` (timesteps fused into
    each output) and, where the head requires them, ``blocks`` and ``timesteps`` are
    filled in; values the config does give are compared and a disagreement raises
    ``ValueError`` naming both (e.g. a DifFormer head configured for blocks (19, 24, 30) on
    a backbone returning (24, 19, 30)). With a neck, the neck gets ``in_channels`` and the
    head's channels are derived only through global pooling necks
    (:mod:`mmdiffssl.models.derived_shapes`).

    Backbones that report no shapes (mmpretrain's own) are built as ``ImageClassifier``
    builds them and the head config is used as written.

    A backbone conditioned on class labels (``given_class_labels``, e.g. ``DiTBackbone`` with
    ``class_label='sample'``) gets the data samples' ``gt_label`` in ``loss`` and ``predict``
    (at test time that feeds the true label to the backbone: a teacher's setting, not a fair
    probe).

    Shapes: inputs ``(B, 3, H, W)`` (the data preprocessor maps pixels to [-1, 1]).
    """

    def __init__(self, backbone, neck=None, head=None, **kwargs):
        if reports_shapes(backbone):
            # built once, here: ImageClassifier takes a built backbone as it is
            if not isinstance(backbone, nn.Module):
                backbone = MMPRETRAIN_MODELS.build(backbone)
            shapes = backbone_shapes(backbone)
            if shapes is not None:
                neck, head = derive_classifier(shapes, neck, head)
        super().__init__(backbone=backbone, neck=neck, head=head, **kwargs)

    def _class_labels(self, data_samples):
        """The samples' labels for a backbone that takes them (a no-op context otherwise)."""
        given = getattr(self.backbone, 'given_class_labels', None)
        if given is None or not data_samples or \
                not all('gt_label' in sample for sample in data_samples):
            return contextlib.nullcontext()
        return given(torch.cat([sample.gt_label for sample in data_samples]))

    def loss(self, inputs, data_samples):
        with self._class_labels(data_samples):
            return super().loss(inputs, data_samples)

    def predict(self, inputs, data_samples=None, **kwargs):
        with self._class_labels(data_samples):
            return super().predict(inputs, data_samples, **kwargs)
