"""Noise for q_sample: the four modes of the diffusion backbones.

- ``'fresh'``: new Gaussian noise every call, from the module's own per-rank stream (draw k
  of rank r from a generator seeded by a hash of ``(seed, r, k)``, the rank read at each
  draw; see :class:`GeneratorStateMixin`). In training mode the draw count is part of the
  module's state dict (``_extra_state``), so a run resumed from a checkpoint draws on each
  rank what a straight run draws. In eval mode a separate generator is used, re-seeded
  (``seed + rank``) each time the module enters eval mode: validation does not shift the
  training noise, and every evaluation sees the same draws.
- ``'fixed'``: a deterministic Gaussian field, a pure function of
  ``(seed, image key, draw, channel, y, x)`` computed with an integer hash. The same image
  gets the same noise whatever the batch size, its position in the batch, padding added at
  the bottom or right, the rank or the device. The image key defaults to 0 (one field for
  every image); callers that know image ids (the feature tools) may pass them.
- ``'none'``: no noise; the clean image is used at timestep t.
- ``'ensemble'``: ``'fixed'`` noise with ``ensemble_size`` draws; the backbone averages the
  features over the draws.
"""
import hashlib
import math
import warnings

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


def _rank_and_world(hint=None):
    """``(rank, world size)`` of the default process group; ``(hint or 0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(hint or 0), 1


def draw_seed(seed, rank, draw):
    """The 64-bit seed of draw number ``draw`` of rank ``rank``'s stream."""
    digest = hashlib.blake2b(f'{int(seed)}:{int(rank)}:{int(draw)}'.encode(), digest_size=8)
    return int.from_bytes(digest.digest(), 'little')


#: First entry of a per-rank stream state (``[STREAM_STATE_VERSION, draws, world size]``).
STREAM_STATE_VERSION = 1


class GeneratorStateMixin:
    """A random stream per rank that a checkpoint resumes on every rank.

    Subclasses that call ``self._init_generator(seed, rank)`` and draw through
    :meth:`draw_generator` get a counter-based stream: draw ``k`` of rank ``r`` comes from a
    generator seeded with :func:`draw_seed` ``(seed, r, k)``. The rank is read at every draw
    (from the default process group, else the ``rank`` hint, else 0), so a module built
    before the process group exists still draws its own rank's stream. The state is the
    number of draws, the same on every rank of a data-parallel run (each rank draws once per
    iteration): ``_extra_state`` is the int64 tensor ``[1, draws, world size]``, which rank 0
    alone can write (mmengine saves checkpoints on rank 0 only, so a gather of every rank's
    generator there would hang), and after loading each rank continues its own stream at
    that draw, as in the straight run.

    A checkpoint of another world size loads (every rank continues its own stream at the
    saved draw: deterministic, but the ranks beyond the old world size start streams the old
    run never drew) with a warning. Checkpoints written before per-rank streams hold one
    generator state (a uint8 tensor, or ``{'generator_state': ...}``: rank 0's): in a single
    process it is continued exactly as before (and saved again in that format); under more
    than one rank it cannot serve every rank, so a warning says so and the ranks switch to
    their counter streams at a draw number derived from a hash of that state.

    Subclasses that assign ``self.generator`` themselves (without ``_init_generator``) keep
    one generator whose state is saved as is (the format before per-rank streams).
    """

    _generator = None
    _generator_seed = 0
    _generator_rank_hint = None
    _draws = None          # None: no counter stream (a generator assigned by the subclass)
    _legacy_stream = False  # continuing a pre-per-rank generator state (single process)

    #: Whether draws come from the stream (DiffusionNoise: 'fresh' only); warnings about
    #: resuming it are given only then.
    _uses_random_stream = True

    def _init_generator(self, seed, rank=None):
        self._generator_seed = int(seed)
        self._generator_rank_hint = rank
        self._generator = None
        self._draws = 0
        self._legacy_stream = False

    def _generator_rank(self):
        return _rank_and_world(self._generator_rank_hint)[0]

    @property
    def generator(self):
        """The generator of the latest draw (created at first use)."""
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(
                self._generator_seed + self._generator_rank())
        return self._generator

    @generator.setter
    def generator(self, value):
        self._generator = value

    def draw_generator(self):
        """The generator to draw the next random values from (advances the stream)."""
        if self._draws is None or self._legacy_stream:
            return self.generator
        self.generator.manual_seed(draw_seed(self._generator_seed, self._generator_rank(),
                                             self._draws))
        self._draws += 1
        return self._generator

    def get_extra_state(self):
        if self._draws is None or self._legacy_stream:
            return self.generator.get_state()
        world = _rank_and_world(self._generator_rank_hint)[1]
        return torch.tensor([STREAM_STATE_VERSION, self._draws, world], dtype=torch.int64)

    def set_extra_state(self, state):
        if isinstance(state, dict):  # checkpoints written before the state became a tensor
            state = state['generator_state']
        state = state.cpu()
        if state.dtype == torch.int64:   # a per-rank stream: [version, draws, world size]
            version, draws, saved_world = (int(v) for v in state.tolist())
            if version != STREAM_STATE_VERSION or self._draws is None:
                raise ValueError(f'{type(self).__name__}: unknown random-stream state '
                                 f'{state.tolist()} in the checkpoint')
            rank, world = _rank_and_world(self._generator_rank_hint)
            self._draws, self._legacy_stream = draws, False
            if saved_world != world and self._uses_random_stream:
                warnings.warn(
                    f'{type(self).__name__}: the checkpoint was written by {saved_world} '
                    f'rank(s), this run has {world}: every rank continues its own random '
                    f'stream at draw {draws} (deterministic, but ranks >= {saved_world} start '
                    'streams the saved run never drew)', stacklevel=2)
            return
        # one torch.Generator state (uint8), written before per-rank streams
        state = state.reshape(-1).clone()   # (a view with an offset crashes set_state)
        rank, world = _rank_and_world(self._generator_rank_hint)
        if self._draws is None or (world == 1 and rank == 0):
            self.generator.set_state(state)
            self._legacy_stream = self._draws is not None
            return
        draws = 1 + int.from_bytes(hashlib.blake2b(state.numpy().tobytes(),
                                                   digest_size=5).digest(), 'little')
        self._draws, self._legacy_stream = draws, False
        if self._uses_random_stream:
            warnings.warn(
                f'{type(self).__name__}: the checkpoint holds one generator state (written before '
                f'per-rank random streams), which cannot resume rank {rank} of {world}: every '
                f'rank continues its own stream at draw {draws}, derived from that state '
                '(deterministic, but not what the saved run would have drawn)', stacklevel=2)


class DiffusionNoise(GeneratorStateMixin, nn.Module):
    """Draws the noise that q_sample adds, in one of :data:`NOISE_MODES`.

    Args:
        mode (str): 'fresh', 'fixed', 'none' or 'ensemble'.
        seed (int): seed of the fixed field, and of the fresh per-rank stream.
        ensemble_size (int): number of fixed draws averaged in 'ensemble' mode.
        rank (int, optional): a hint only: the rank decorrelating fresh noise across ranks is
            read from the default process group at each draw; this value is used when no
            process group exists then (default 0). See :class:`GeneratorStateMixin`.
    """

    def __init__(self, mode='fixed', seed=0, ensemble_size=4, rank=None):
        super().__init__()
        if mode not in NOISE_MODES:
            raise ValueError(f"noise mode '{mode}' is not one of {NOISE_MODES}")
        if mode == 'ensemble' and int(ensemble_size) < 1:
            raise ValueError(f'ensemble_size must be >= 1, got {ensemble_size}')
        self.mode = mode
        self.seed = int(seed)
        self.ensemble_size = int(ensemble_size) if mode == 'ensemble' else 1
        self._init_generator(self.seed, rank)
        self._eval_generator = None

    @property
    def _uses_random_stream(self):
        return self.mode == 'fresh'

    @property
    def rank(self):
        """The rank whose stream this module draws (read from the process group when set)."""
        return self._generator_rank()

    @property
    def eval_generator(self):
        """The eval-mode generator, seeded ``seed + rank`` at first use after entering eval."""
        if self._eval_generator is None:
            self._eval_generator = torch.Generator().manual_seed(self.seed + self.rank)
        return self._eval_generator

    def train(self, mode=True):
        if not mode:
            self._eval_generator = None   # reseeded (with the rank read then) at first use
        return super().train(mode)

    def stream_state(self):
        """Where the 'fresh' streams stand (training draw count and generators, evaluation
        generator), for :meth:`rewind` (DifFeed's second pass draws the first pass's noise)."""
        return (self._draws, self.generator.get_state().clone(),
                self.eval_generator.get_state().clone())

    def rewind(self, state):
        """Return the streams to a :meth:`stream_state`."""
        self._draws = state[0]
        self.generator.set_state(state[1])
        self.eval_generator.set_state(state[2])

    @property
    def num_draws(self):
        """How many noise draws the features are averaged over."""
        return self.ensemble_size

    def sample(self, shape, device, dtype, draw=0, keys=None):
        """Noise of ``shape`` (B, C, H, W) for draw ``draw``; None in 'none' mode."""
        if self.mode == 'none':
            return None
        if self.mode == 'fresh':
            generator = self.draw_generator() if self.training else self.eval_generator
            return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
        return hashed_normal(shape, self.seed, keys, draw, device, dtype)

    def extra_repr(self):
        return f'mode={self.mode!r}, seed={self.seed}, ensemble_size={self.ensemble_size}'
