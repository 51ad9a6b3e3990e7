"""Training utilities: the ADM layer-decay optimizer constructor and the timestep-policy hook.

``ADMLayerDecayOptimWrapperConstructor`` (mmengine's root ``OPTIM_WRAPPER_CONSTRUCTORS``) and
``TimestepPolicyHook`` (root ``HOOKS``) are found from the mmdet, mmseg and mmpretrain scopes.
They need only torch and mmengine and are registered by ``import mmdiffssl``.
"""
from .layer_decay_constructor import ADMLayerDecayOptimWrapperConstructor, adm_layer_ids
from .timestep_policy_hook import TimestepPolicyHook

__all__ = ['ADMLayerDecayOptimWrapperConstructor', 'adm_layer_ids', 'TimestepPolicyHook']
