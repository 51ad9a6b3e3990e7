"""Classification models on diffusion U-Nets: DifFeed and the shape-deriving classifier.

``DifFeedBackbone`` needs only torch and mmengine; ``DiffSSLClassifier`` subclasses
mmpretrain's ``ImageClassifier`` (its head takes its input shapes from the backbone:
:mod:`mmdiffssl.models.derived_shapes`). Both are imported on first access.
"""
from mmdiffssl.utils.lazy import lazy_attributes

_EXPORTS = {'DifFeedBackbone': 'diffeed', 'mirror_block': 'diffeed',
            'DiffSSLClassifier': 'diffssl_classifier'}
__all__ = list(_EXPORTS)
__getattr__ = lazy_attributes(__name__, _EXPORTS)
