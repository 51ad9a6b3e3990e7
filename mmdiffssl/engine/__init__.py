"""Training utilities: the feature-cache runner, the layer-decay optimizer constructor, the
timestep-policy hook, the check of ``Pretrained`` initialisation and mmseg's visualisation hook
for test runs without the training split.

All are found by ``type=`` (``runner_type=`` for the runner) from the mmdet, mmseg and
mmpretrain scopes (:mod:`mmdiffssl.registry`); they need only torch and mmengine to import
(``StandaloneSegVisualizationHook`` imports mmseg when built).
"""
from .feature_cache_runner import FeatureCacheRunner, with_feature_cache, with_teacher_cache
from .layer_decay_constructor import LayerDecayOptimWrapperConstructor, block_layer_ids
from .pretrained_check_hook import PretrainedInitCheckHook, check_pretrained_init
from .seg_visualization_hook import StandaloneSegVisualizationHook
from .timestep_policy_hook import TimestepPolicyHook

__all__ = ['FeatureCacheRunner', 'with_feature_cache', 'with_teacher_cache',
           'LayerDecayOptimWrapperConstructor', 'block_layer_ids', 'TimestepPolicyHook',
           'PretrainedInitCheckHook', 'check_pretrained_init', 'StandaloneSegVisualizationHook']
