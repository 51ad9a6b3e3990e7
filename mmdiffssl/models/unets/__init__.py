"""Diffusion U-Nets re-implemented with a block-level feature API."""
from .adm import ADMUNet, BlockSpec, CheckpointFn, timestep_embedding
from .adm_presets import (ADM_CHECKPOINT_NAMES, ADM_PRESETS,
                          DEFAULT_CHANNEL_MULT, GUIDED_DIFFUSION_DEFAULTS,
                          NUM_CLASSES, adm_flags_from, build_adm_unet)

__all__ = [
    'ADMUNet', 'BlockSpec', 'CheckpointFn', 'timestep_embedding',
    'ADM_PRESETS', 'ADM_CHECKPOINT_NAMES', 'DEFAULT_CHANNEL_MULT',
    'GUIDED_DIFFUSION_DEFAULTS', 'NUM_CLASSES', 'adm_flags_from',
    'build_adm_unet'
]
