"""Distillers: RepFusion (diffusion features at a learned timestep into a small student)."""
from .distill_losses import DISTILL_LOSSES
from .repfusion import RepFusionDistiller
from .timestep_policies import (FixedTimestep, LearnedTimestepPolicy, PolicyOutput,
                                UniformTimestep)

__all__ = ['DISTILL_LOSSES', 'RepFusionDistiller', 'FixedTimestep', 'UniformTimestep',
           'LearnedTimestepPolicy', 'PolicyOutput']
