"""Re-drawing all parameters of a network, e.g. to get non-degenerate test
models out of diffusion U-Nets (whose freshly built residual branches and
output layer are zero-initialised, which hides most of the computation)."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

_NORMS = (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d,
          nn.BatchNorm3d)


@torch.no_grad()
def redraw_parameters_(module: nn.Module,
                       generator: Optional[torch.Generator] = None,
                       std: float = 0.1, gain: float = 1.0) -> nn.Module:
    """Re-draw every parameter of ``module`` in place.

    Rules, applied per parameter (shared parameters are drawn once):

    * weight/bias of normalisation layers: ``1 + std * N(0, 1)`` and
      ``std * N(0, 1)``;
    * ``nn.Embedding`` weights: ``N(0, 1)``;
    * other parameters with >= 2 dims (conv / linear weights):
      ``gain * N(0, 1) / sqrt(fan_in)``, ``fan_in = numel / shape[0]``, which
      keeps activations O(1) through deep (residual) networks;
    * remaining 1-D parameters (biases): ``std * N(0, 1)``.

    Samples are drawn on the CPU in ``module.named_parameters()`` order and
    then copied, so the result is deterministic given ``generator`` and
    independent of the parameters' device.

    Args:
        module: the network; its parameters must not be on the meta device.
        generator: CPU random generator (the global one if None).
        std: scale of bias and normalisation-parameter noise.
        gain: scale of weight matrices relative to ``1 / sqrt(fan_in)``.

    Returns:
        ``module``.
    """
    kinds: dict[int, str] = {}
    for submodule in module.modules():
        for name, param in submodule.named_parameters(recurse=False):
            if isinstance(submodule, _NORMS):
                kinds[id(param)] = 'norm_' + name
            elif isinstance(submodule, nn.Embedding):
                kinds[id(param)] = 'embedding'
    for param in module.parameters():
        noise = torch.randn(param.shape, generator=generator, dtype=torch.float32,
                            device='cpu')  # also under a default-device context
        kind = kinds.get(id(param))
        if kind == 'norm_weight':
            value = 1 + std * noise
        elif kind == 'embedding':
            value = noise
        elif param.dim() >= 2:
            value = gain * noise / math.sqrt(param[0].numel())
        else:
            value = std * noise
        param.copy_(value)
    return module
