"""Training utilities: the layer-decay optimizer constructor, the timestep-policy hook, the
check of ``Pretrained`` initialisation and a test-split-only segmentation visualisation hook.

``LayerDecayOptimWrapperConstructor`` (mmengine's root ``OPTIM_WRAPPER_CONSTRUCTORS``),
``TimestepPolicyHook``, ``PretrainedInitCheckHook`` and ``StandaloneSegVisualizationHook``
(root ``HOOKS``) are found from the mmdet, mmseg and mmpretrain scopes.
They need only torch and mmengine to import (the last imports mmseg when built) and are
registered by ``import mmdiffssl``.
"""
from .layer_decay_constructor import LayerDecayOptimWrapperConstructor, block_layer_ids
from .pretrained_check_hook import PretrainedInitCheckHook, check_pretrained_init
from .seg_visualization_hook import StandaloneSegVisualizationHook
from .timestep_policy_hook import TimestepPolicyHook

__all__ = ['LayerDecayOptimWrapperConstructor', 'block_layer_ids', 'TimestepPolicyHook',
           'PretrainedInitCheckHook', 'check_pretrained_init', 'StandaloneSegVisualizationHook']
