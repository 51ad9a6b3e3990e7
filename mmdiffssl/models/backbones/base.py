"""What every diffusion backbone shares: timesteps, noise, fusion, output shapes, forward.

A diffusion backbone maps an image batch to features of a denoising network:

    x (B, 3, H, W) in [-1, 1] --_encode--> x0 (pixels, or VAE latents)
      --q_sample at each timestep (noise mode of :mod:`mmdiffssl.models.noise`)-->
      --_unet_features--> {block: (T * B, C_b, H_b, W_b)} --> (T, B, C_b, H_b, W_b) per block
      --fuse--> one ``(B, C, H', W')`` map per block

Subclasses (``ADMBackbone``, ``SDBackbone``, ``DiffusersUNetBackbone``) give the network,
its schedule and block table; this class gives the rest, so the intermediate-feature API
(``intermediates``, ``intermediates_at``), ``output_shape``/``out_channels``/``out_strides``,
the timestep and image checks and the state-dict handling of reloaded weights are the same
for all of them.
"""
from dataclasses import dataclass

import torch
from mmengine.dist import get_rank
from mmengine.model import BaseModule

from mmdiffssl.models.noise import DiffusionNoise

#: ``dtype`` argument -> autocast dtype (None: no autocast).
AUTOCAST_DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
FUSE_MODES = ('concat', 'mean')


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride (input size / feature size) of one backbone output."""
    channels: int
    stride: int


class DiffusionBackbone(BaseModule):
    """Base class of the diffusion backbones (not registered; see the module docstring).

    Subclasses set ``self.schedule`` (a :class:`~mmdiffssl.models.diffusion.DiffusionSchedule`)
    and ``self.blocks``, call :meth:`_setup_noise`, :meth:`_set_timesteps`, :meth:`_set_fuse`
    and :meth:`_set_dtype`, and implement :meth:`block_shape` and :meth:`_unet_features`
    (and :meth:`_encode` for latent models).
    """

    def __init__(self, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        # Weights reloaded from their files at construction (see _reloaded_modules) are left
        # out of run checkpoints.
        self._register_state_dict_hook(DiffusionBackbone._drop_reloaded)
        self.register_load_state_dict_post_hook(DiffusionBackbone._ignore_missing_reloaded)

    # ------------------------------------------------------------------ construction
    def _setup_noise(self, noise, noise_seed, ensemble_size):
        self.noise = DiffusionNoise(noise, noise_seed, ensemble_size, rank=get_rank())

    def _set_timesteps(self, timesteps):
        self.timesteps = tuple(int(t) for t in timesteps)
        if not self.timesteps:
            raise ValueError('timesteps is empty: give at least one timestep')
        self._check_timesteps(self.timesteps)

    def _set_fuse(self, fuse_timesteps):
        if fuse_timesteps not in FUSE_MODES:
            raise ValueError(f"fuse_timesteps='{fuse_timesteps}' is not 'concat' or 'mean'")
        self.fuse_timesteps = fuse_timesteps

    def _set_dtype(self, dtype):
        if dtype not in AUTOCAST_DTYPES:
            raise ValueError(f"dtype='{dtype}' is not one of {tuple(AUTOCAST_DTYPES)}")
        self.dtype = dtype

    def _check_timesteps(self, timesteps):
        steps = self.schedule.num_steps
        for t in timesteps:
            if not 0 <= t < steps:
                raise ValueError(f'timestep {t} is outside [0, {steps}) of this arch\'s '
                                 f'{self.schedule.name} schedule')

    def _autocast(self, device_type):
        """Autocast context of ``dtype`` (a disabled one for 'fp32')."""
        autocast_dtype = AUTOCAST_DTYPES[self.dtype]
        return torch.autocast(device_type, dtype=autocast_dtype or torch.float32,
                              enabled=autocast_dtype is not None)

    # ------------------------------------------------------------------ run checkpoints
    def _reloaded_modules(self):
        """Names of submodules whose weights are reloaded from files at construction and
        never train: run checkpoints leave them out and loading tolerates their absence."""
        return ()

    @staticmethod
    def _drop_reloaded(module, state_dict, prefix, local_metadata):
        for name in module._reloaded_modules():
            for key in [k for k in state_dict if k.startswith(f'{prefix}{name}.')]:
                del state_dict[key]

    @staticmethod
    def _ignore_missing_reloaded(module, incompatible_keys):
        names = module._reloaded_modules()
        if names:
            missing = incompatible_keys.missing_keys
            missing[:] = [k for k in missing
                          if not any(f'.{n}.' in k or k.startswith(f'{n}.') for n in names)]

    # ------------------------------------------------------------------ shapes
    def block_shape(self, block):
        """ShapeSpec of one block's feature at one timestep (channels before fusion)."""
        raise NotImplementedError

    def output_shape(self):
        """list[ShapeSpec]: channels and stride of each output, in ``blocks`` order."""
        fuse = len(self.timesteps) if self.fuse_timesteps == 'concat' else 1
        return [ShapeSpec(s.channels * fuse, s.stride)
                for s in (self.block_shape(b) for b in self.blocks)]

    @property
    def out_channels(self):
        """list[int]: channels of each output (for necks and heads)."""
        return [s.channels for s in self.output_shape()]

    @property
    def out_strides(self):
        """list[int]: stride of each output."""
        return [s.stride for s in self.output_shape()]

    # ------------------------------------------------------------------ forward
    def _graph_needed(self, x, injections):
        if not self.frozen and torch.is_grad_enabled():
            return True
        if x.requires_grad:
            return True
        return any(torch.is_tensor(v) and v.requires_grad for v in (injections or {}).values())

    def _encode(self, x):
        """What is noised: the image itself here; latent models return their latents."""
        return x

    def intermediates(self, x, blocks=None, timesteps=None, injections=None, keys=None):
        """Noise ``x`` at each timestep and return U-Net block features, unfused.

        This is the one entry point for everything built on the U-Net (heads, DifFeed,
        RepFusion, the dense pyramid).

        Args:
            x (Tensor): ``(B, 3, H, W)`` RGB in [-1, 1].
            blocks (Sequence[int], optional): blocks to return; default ``self.blocks``.
            timesteps (Sequence[int], optional): default ``self.timesteps``.
            injections (Mapping[int, Tensor], optional): tensor added to a block's output
                before it is passed on or stored as a skip; ``(B, C_b, H_b, W_b)``, or
                ``(B * len(timesteps), ...)`` with timesteps outermost.
            keys (Tensor, optional): ``(B,)`` image keys for 'fixed'/'ensemble' noise.

        Returns:
            dict[int, Tensor]: block -> ``(len(timesteps), B, C_b, H_b, W_b)``, averaged over
            noise draws in 'ensemble' mode.
        """
        self._check_image(x)
        return self._intermediates_of(x, self._encode(x), blocks, timesteps, injections, keys)

    def _intermediates_of(self, x, x0, blocks, timesteps, injections, keys):
        """:meth:`intermediates` of an already encoded ``x0`` (``x`` is the input image)."""
        blocks = self.blocks if blocks is None else tuple(blocks)
        timesteps = self.timesteps if timesteps is None else tuple(timesteps)
        self._check_timesteps(timesteps)
        n_t, batch = len(timesteps), x.shape[0]
        t_batch = torch.tensor(timesteps, device=x.device).repeat_interleave(batch)
        if injections:
            injections = {b: v if v.shape[0] == n_t * batch else v.repeat(n_t, 1, 1, 1)
                          for b, v in injections.items()}

        def noised(draw):
            return torch.cat([self._q_sample(x0, t, draw, keys) for t in timesteps])
        feats = self._run_unet(noised, x, t_batch, blocks, injections)
        return {b: f.unflatten(0, (n_t, batch)) for b, f in feats.items()}

    def intermediates_at(self, x, t, blocks=None, injections=None, keys=None):
        """Like :meth:`intermediates` with one timestep per image (e.g. a learned policy's).

        Args:
            x (Tensor): ``(B, 3, H, W)`` RGB in [-1, 1].
            t (Tensor): ``(B,)`` integer timesteps in [0, diffusion_steps).
            blocks (Sequence[int], optional): blocks to return; default ``self.blocks``.
            injections (Mapping[int, Tensor], optional): ``(B, C_b, H_b, W_b)`` per block.
            keys (Tensor, optional): ``(B,)`` image keys for 'fixed'/'ensemble' noise.

        Returns:
            dict[int, Tensor]: block -> ``(B, C_b, H_b, W_b)``, image i noised to ``t[i]``.
        """
        blocks = self.blocks if blocks is None else tuple(blocks)
        self._check_image(x)
        if not torch.is_tensor(t) or t.shape != (x.shape[0],):
            raise ValueError(f't must be a ({x.shape[0]},) tensor of timesteps, one per image; '
                             f'got {t if not torch.is_tensor(t) else tuple(t.shape)}')
        self._check_timesteps(t.tolist())
        t = t.to(device=x.device, dtype=torch.long)
        x0 = self._encode(x)
        return self._run_unet(lambda draw: self._q_sample(x0, t, draw, keys), x, t, blocks,
                              injections)

    @staticmethod
    def _check_image(x):
        if x.dim() != 4:
            raise ValueError(f'expected a (B, C, H, W) image batch, got shape {tuple(x.shape)}')

    def _run_unet(self, noised, x, t_batch, blocks, injections):
        """U-Net features of ``noised(draw)`` at ``t_batch``, averaged over noise draws.

        Returns:
            dict[int, Tensor]: block -> ``(N, C_b, H_b, W_b)`` float32, N = ``len(t_batch)``.
        """
        out = None
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._graph_needed(x, injections)):
            for draw in range(self.noise.num_draws):
                feats = self._unet_features(noised(draw), t_batch, blocks, injections)
                feats = {b: f.float() for b, f in feats.items()}
                out = feats if out is None else {b: out[b] + feats[b] for b in blocks}
        if self.noise.num_draws > 1:
            out = {b: f / self.noise.num_draws for b, f in out.items()}
        return out

    def _unet_features(self, x_t, t_batch, blocks, injections):
        """The network's block features of a noised batch: block -> ``(N, C, H, W)``."""
        raise NotImplementedError

    def _q_sample(self, x, t, draw, keys):
        noise = self.noise.sample(x.shape, x.device, x.dtype, draw=draw, keys=keys)
        if noise is None:
            return x
        return self.schedule.q_sample(x, t, noise)

    def fuse(self, feature):
        """``(T, B, C, H, W)`` -> ``(B, T * C, H, W)`` ('concat') or ``(B, C, H, W)`` ('mean')."""
        if self.fuse_timesteps == 'mean':
            return feature.mean(0)
        return torch.cat(list(feature), dim=1)

    def forward(self, x):
        """``(B, 3, H, W)`` in [-1, 1] -> tuple of fused features, one per block."""
        feats = self.intermediates(x)
        return tuple(self.fuse(feats[b]) for b in self.blocks)
