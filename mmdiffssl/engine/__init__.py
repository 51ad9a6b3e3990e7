"""Training utilities: the layer-decay optimizer constructor, the timestep-policy hook and
the check of ``Pretrained`` initialisation.

``LayerDecayOptimWrapperConstructor`` (mmengine's root ``OPTIM_WRAPPER_CONSTRUCTORS``),
``TimestepPolicyHook`` and ``PretrainedInitCheckHook`` (root ``HOOKS``) are found from the
mmdet, mmseg and mmpretrain scopes.
They need only torch and mmengine and are registered by ``import mmdiffssl``.
"""
from .layer_decay_constructor import LayerDecayOptimWrapperConstructor, block_layer_ids
from .pretrained_check_hook import PretrainedInitCheckHook, check_pretrained_init
from .timestep_policy_hook import TimestepPolicyHook

__all__ = ['LayerDecayOptimWrapperConstructor', 'block_layer_ids', 'TimestepPolicyHook',
           'PretrainedInitCheckHook', 'check_pretrained_init']
