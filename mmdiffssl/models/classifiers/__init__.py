"""Classification models on diffusion U-Nets: DifFeed and the shape-deriving classifier.

``DifFeedBackbone`` needs only torch and mmengine; ``DiffSSLClassifier`` subclasses
mmpretrain's ``ImageClassifier`` (its head takes its input shapes from the backbone:
:mod:`mmdiffssl.models.derived_shapes`) and is registered only when mmpretrain is installed.
"""
import importlib.util

from .diffeed import DifFeedBackbone, mirror_block

__all__ = ['DifFeedBackbone', 'mirror_block']

if importlib.util.find_spec('mmpretrain') is not None:
    from .diffssl_classifier import DiffSSLClassifier  # noqa: F401

    __all__ += ['DiffSSLClassifier']
