"""Python entry points: building backbones, extracting features, block tables, and the
classification configs by name in mmpretrain's model index (:func:`register_models`)."""
from .features import build_backbone, extract_features, to_model_range
from .model_index import register_models

__all__ = ['build_backbone', 'extract_features', 'to_model_range', 'register_models']
