"""Training utilities for dense prediction on diffusion backbones.

``ADMLayerDecayOptimWrapperConstructor`` is registered in mmengine's root
``OPTIM_WRAPPER_CONSTRUCTORS`` (found from the mmdet, mmseg and mmpretrain scopes). It needs
only torch and mmengine and is registered by ``import mmdiffssl``.
"""
from .layer_decay_constructor import ADMLayerDecayOptimWrapperConstructor, adm_layer_ids

__all__ = ['ADMLayerDecayOptimWrapperConstructor', 'adm_layer_ids']
