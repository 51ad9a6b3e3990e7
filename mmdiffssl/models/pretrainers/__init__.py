"""Pretraining models: diffusion U-Nets trained with the DDPM objective."""
from .ddpm import DDPMPretrainer, TimestepSampler

__all__ = ['DDPMPretrainer', 'TimestepSampler']
