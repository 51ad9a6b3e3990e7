"""Python entry points: building backbones, extracting features, block tables."""
from .features import build_backbone, extract_features, to_model_range

__all__ = ['build_backbone', 'extract_features', 'to_model_range']
