"""Python entry points: running configs, building backbones, extracting features and
registering the classification configs in mmpretrain's model index."""
from .features import build_backbone, extract_features, to_model_range
from .model_index import register_models
from .runner import (add_runner_arguments, apply_feature_cache, apply_teacher_cache,
                     build_runner, enable_amp, enable_visualization, load_config, set_resume)

__all__ = ['build_backbone', 'extract_features', 'to_model_range', 'add_runner_arguments',
           'apply_feature_cache', 'apply_teacher_cache', 'build_runner', 'enable_amp', 'enable_visualization',
           'load_config', 'register_models', 'set_resume']
