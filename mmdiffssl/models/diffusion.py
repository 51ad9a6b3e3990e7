"""Forward-diffusion noise schedules of guided-diffusion (ADM).

Timesteps are integers ``t`` in ``[0, num_steps)``; ``t = 0`` is the first
noising step (guided-diffusion's convention).
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

#: Names accepted by :func:`beta_schedule`.
SCHEDULES = ('linear', 'cosine')


def _cosine_alpha_bar(fraction: float, offset: float = 0.008) -> float:
    """Improved-DDPM cumulative signal level at ``fraction`` in ``[0, 1]``."""
    return math.cos((fraction + offset) / (1 + offset) * math.pi / 2) ** 2


def beta_schedule(name: str, num_steps: int) -> Tensor:
    """Per-step noise variances of a named schedule.

    ``'linear'``: Ho et al.'s schedule rescaled to ``num_steps``, i.e. evenly
    spaced from ``s * 1e-4`` to ``s * 0.02`` with ``s = 1000 / num_steps``.
    ``'cosine'``: Nichol & Dhariwal's schedule, ``beta_i = min(1 -
    abar((i + 1) / T) / abar(i / T), 0.999)`` with
    ``abar(u) = cos((u + 0.008) / 1.008 * pi / 2) ** 2``.

    Args:
        name: one of :data:`SCHEDULES`.
        num_steps: number of diffusion steps ``T`` (positive).

    Returns:
        float64 tensor of shape ``(T,)``.
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f'num_steps must be a positive int, got {num_steps!r}')
    if name == 'linear':
        scale = 1000 / num_steps
        start, end = scale * 1e-4, scale * 0.02
        # start + i * step with an exact end point, computed like
        # numpy.linspace so that the values match guided-diffusion's bitwise
        step = (end - start) / max(num_steps - 1, 1)
        betas = torch.arange(num_steps, dtype=torch.float64) * step + start
        if num_steps > 1:
            betas[-1] = end
        return betas
    if name == 'cosine':
        betas = [
            min(1 - _cosine_alpha_bar((i + 1) / num_steps)
                / _cosine_alpha_bar(i / num_steps), 0.999)
            for i in range(num_steps)
        ]
        return torch.tensor(betas, dtype=torch.float64)
    raise ValueError(f'unknown beta schedule {name!r}; available: '
                     f'{", ".join(SCHEDULES)}')


class DiffusionSchedule:
    """A discrete forward-diffusion process ``q(x_t | x_0)``.

    Args:
        name: beta schedule name, see :func:`beta_schedule`.
        num_steps: number of diffusion steps ``T``.

    Attributes (float64 tensors of shape ``(T,)``, on the CPU):
        betas: per-step noise variances.
        alphas_cumprod: ``abar_t = prod_{s <= t} (1 - beta_s)``.
        sqrt_alphas_cumprod: ``sqrt(abar_t)``.
        sqrt_one_minus_alphas_cumprod: ``sqrt(1 - abar_t)``.
    """

    def __init__(self, name: str = 'linear', num_steps: int = 1000):
        self.name = name
        self.num_steps = num_steps
        self.betas = beta_schedule(name, num_steps)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(name={self.name!r}, '
                f'num_steps={self.num_steps})')

    def _check_timesteps(self, t: Union[int, Tensor], batch: int) -> Tensor:
        """Validate ``t`` and return it as an int64 CPU tensor ``(batch,)``."""
        if isinstance(t, int):
            t = torch.full((batch,), t, dtype=torch.int64)
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f'timesteps must be integers, got dtype {t.dtype}')
        if t.shape != (batch,):
            raise ValueError(f'timesteps must have shape ({batch},), got '
                             f'{tuple(t.shape)}')
        t = t.detach().to('cpu', torch.int64)
        bad = t[(t < 0) | (t >= self.num_steps)]
        if bad.numel():
            raise ValueError(f'timestep {bad[0].item()} is out of range '
                             f'[0, {self.num_steps})')
        return t

    def q_sample(self, x0: Tensor, t: Union[int, Tensor],
                 noise: Optional[Tensor] = None) -> Tensor:
        """Sample ``x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise``.

        Args:
            x0: clean data, shape ``(N, *)``.
            t: integer timesteps in ``[0, T)``, shape ``(N,)``, or one int
                for the whole batch.
            noise: standard normal noise shaped like ``x0``; drawn with
                ``torch.randn_like`` if omitted.

        Returns:
            ``x_t``, same shape, dtype and device as ``x0`` (the coefficients
            are cast to ``x0``'s dtype before multiplying).
        """
        t = self._check_timesteps(t, x0.shape[0])
        if noise is None:
            noise = torch.randn_like(x0)
        elif noise.shape != x0.shape:
            raise ValueError(f'noise shape {tuple(noise.shape)} differs from '
                             f'x0 shape {tuple(x0.shape)}')
        coef_shape = (-1, ) + (1, ) * (x0.dim() - 1)

        def coefficient(table: Tensor) -> Tensor:
            return table[t].to(x0.device, x0.dtype).reshape(coef_shape)

        return (coefficient(self.sqrt_alphas_cumprod) * x0
                + coefficient(self.sqrt_one_minus_alphas_cumprod) * noise)
