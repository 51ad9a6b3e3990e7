"""Classification models on diffusion U-Nets: DifFeed and the checked classifier.

``DifFeedBackbone`` and :func:`check_matches_backbone` need only torch and mmengine;
``DiffSSLClassifier`` subclasses mmpretrain's ``ImageClassifier`` and is registered only when
mmpretrain is installed.
"""
import importlib.util

from .checks import check_matches_backbone
from .diffeed import DifFeedBackbone, mirror_block

__all__ = ['DifFeedBackbone', 'check_matches_backbone', 'mirror_block']

if importlib.util.find_spec('mmpretrain') is not None:
    from .diffssl_classifier import DiffSSLClassifier  # noqa: F401

    __all__ += ['DiffSSLClassifier']
