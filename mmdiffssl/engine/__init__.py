"""Training utilities: the layer-decay optimizer constructor and the timestep-policy hook.

``LayerDecayOptimWrapperConstructor`` (mmengine's root ``OPTIM_WRAPPER_CONSTRUCTORS``) and
``TimestepPolicyHook`` (root ``HOOKS``) are found from the mmdet, mmseg and mmpretrain scopes.
They need only torch and mmengine and are registered by ``import mmdiffssl``.
"""
from .layer_decay_constructor import LayerDecayOptimWrapperConstructor, block_layer_ids
from .timestep_policy_hook import TimestepPolicyHook

__all__ = ['LayerDecayOptimWrapperConstructor', 'block_layer_ids', 'TimestepPolicyHook']
