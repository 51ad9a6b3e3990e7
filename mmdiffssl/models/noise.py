"""Noise for q_sample: the four modes of the diffusion backbones.

- ``'fresh'``: new Gaussian noise every call, from the module's own ``torch.Generator``
  (seeded by ``seed + rank``). In training mode its state is part of the module's state dict
  (``_extra_state``), so a run resumed from a checkpoint draws what a straight run draws. In
  eval mode a separate generator is used, re-seeded each time the module enters eval mode:
  validation does not shift the training noise, and every evaluation sees the same draws.
- ``'fixed'``: a deterministic Gaussian field, a pure function of
  ``(seed, image key, draw, channel, y, x)`` computed with an integer hash. The same image
  gets the same noise whatever the batch size, its position in the batch, padding added at
  the bottom or right, the rank or the device. The image key defaults to 0 (one field for
  every image); callers that know image ids (the feature tools) may pass them.
- ``'none'``: no noise; the clean image is used at timestep t.
- ``'ensemble'``: ``'fixed'`` noise with ``ensemble_size`` draws; the backbone averages the
  features over the draws.
"""
import math

import torch
import torch.nn as nn

NOISE_MODES = ('fresh', 'fixed', 'none', 'ensemble')
_MASK32 = 0xFFFFFFFF


def _hash32(x):
    """lowbias32 integer hash, elementwise on an int64 tensor holding values < 2**32."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def hashed_normal(shape, seed, keys=None, draw=0, device='cpu', dtype=torch.float32):
    """Standard normal samples that depend only on their coordinates.

    Args:
        shape (tuple): ``(B, C, H, W)``.
        seed (int): global seed.
        keys (Tensor, optional): ``(B,)`` integer key per image; 0 for all if None.
        draw (int): index of the draw (ensemble member).
        device, dtype: of the result.

    Returns:
        Tensor: ``(B, C, H, W)`` with ``out[b, c, y, x]`` a function of
        ``(seed, keys[b], draw, c, y, x)`` alone.
    """
    b, c, h, w = shape
    if keys is None:
        keys = torch.zeros(b, dtype=torch.int64, device=device)
    keys = keys.to(device=device, dtype=torch.int64).view(b, 1, 1, 1)

    def coord(n, dim):
        view = [1, 1, 1, 1]
        view[dim] = n
        return torch.arange(n, device=device, dtype=torch.int64).view(view)

    state = _hash32(torch.tensor(seed, device=device, dtype=torch.int64) * 0x9E3779B1 + draw)
    for part in (keys, coord(c, 1), coord(h, 2), coord(w, 3)):
        state = _hash32(state ^ _hash32(part + 0x632BE5AB))
    u1 = (_hash32(state ^ 0x1B873593).double() + 1.0) / 4294967296.0  # in (0, 1]
    u2 = _hash32(state ^ 0x68E31DA4).double() / 4294967296.0          # in [0, 1)
    normal = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return normal.to(dtype)


class GeneratorStateMixin:
    """Keeps ``self.generator``'s state in the module's state dict (``_extra_state``).

    The state is a uint8 tensor, so it travels through ``torch.save``/``weights_only``
    loading and through the broadcast of every state-dict entry that distributed training
    does after weight initialisation.
    """

    def get_extra_state(self):
        return self.generator.get_state()

    def set_extra_state(self, state):
        if isinstance(state, dict):  # checkpoints written before the state became a tensor
            state = state['generator_state']
        self.generator.set_state(state.cpu())


class DiffusionNoise(GeneratorStateMixin, nn.Module):
    """Draws the noise that q_sample adds, in one of :data:`NOISE_MODES`.

    Args:
        mode (str): 'fresh', 'fixed', 'none' or 'ensemble'.
        seed (int): seed of the fixed field, and of the fresh generator (plus the rank).
        ensemble_size (int): number of fixed draws averaged in 'ensemble' mode.
        rank (int): process rank, decorrelating fresh noise across ranks.
    """

    def __init__(self, mode='fixed', seed=0, ensemble_size=4, rank=0):
        super().__init__()
        if mode not in NOISE_MODES:
            raise ValueError(f"noise mode '{mode}' is not one of {NOISE_MODES}")
        if mode == 'ensemble' and int(ensemble_size) < 1:
            raise ValueError(f'ensemble_size must be >= 1, got {ensemble_size}')
        self.mode = mode
        self.seed = int(seed)
        self.ensemble_size = int(ensemble_size) if mode == 'ensemble' else 1
        self.rank = int(rank)
        self.generator = torch.Generator().manual_seed(self.seed + self.rank)
        self.eval_generator = torch.Generator().manual_seed(self.seed + self.rank)

    def train(self, mode=True):
        if not mode:
            self.eval_generator.manual_seed(self.seed + self.rank)
        return super().train(mode)

    @property
    def num_draws(self):
        """How many noise draws the features are averaged over."""
        return self.ensemble_size

    def sample(self, shape, device, dtype, draw=0, keys=None):
        """Noise of ``shape`` (B, C, H, W) for draw ``draw``; None in 'none' mode."""
        if self.mode == 'none':
            return None
        if self.mode == 'fresh':
            generator = self.generator if self.training else self.eval_generator
            return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
        return hashed_normal(shape, self.seed, keys, draw, device, dtype)

    def extra_repr(self):
        return f'mode={self.mode!r}, seed={self.seed}, ensemble_size={self.ensemble_size}'
