"""Feature-extraction speed of :class:`SDBackbone` against diffusers run the usual way.

Ours: ``SDBackbone.intermediates`` (VAE encode once, q_sample, all timesteps batched into
one U-Net forward stopped after the deepest requested block, SDPA attention, autocast
``dtype``). Reference (the plain diffusers way): the same VAE and U-Net converted to fp16 on
a GPU (fp32 on a CPU), VAE encode once, then per timestep ``DDPMScheduler.add_noise`` with fresh
noise and one **full** ``UNet2DConditionModel.forward`` under ``torch.no_grad()``; the blocks
are read by forward hooks. Both sides get the same weights (``pretrained`` or random weights
of a published arch, ``SD_ARCHS``) and the same text embedding; timing, FLOP counting and
agreement work as for ADM (:mod:`benchmarks.speed`).
"""
from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence, Union

import torch

from mmdiffssl.models.backbones import SDBackbone
from mmdiffssl.models.noise import DiffusionNoise, hashed_normal
from mmdiffssl.models.unets.diffusers_blocks import SD_ARCHS

from mmdiffssl.benchmark.flops import count_flops
from benchmarks.speed import (CommonBenchmarkConfig, _device_name, _on_cpu, _random_batch, _sync,
                    add_reference, cosine_per_block, side_stats, time_reference, time_side,
                    torch_threads)


@dataclass
class SDBenchmarkConfig(CommonBenchmarkConfig):
    """What to measure for SD (``tools/benchmark.py --backbone sd``)."""
    arch: Union[str, dict] = 'sd-1.x'
    blocks: Union[Sequence, str] = 'pyramid'
    timesteps: Sequence[int] = (100, )
    batch: int = 16
    size: int = 512
    iters: int = 10
    warmup: int = 2
    check_images: int = 2
    pretrained: Optional[str] = None
    config: Optional[str] = None
    stride4: Optional[str] = None


def build_sd_backbone(cfg: SDBenchmarkConfig, prune=True) -> SDBackbone:
    """The backbone: from ``pretrained``, or random weights of ``arch`` (a name of
    ``SD_ARCHS`` or ``dict(unet=..., vae=...)``) with a random 77-token text embedding.
    ``prune=False`` keeps the whole U-Net (the reference's copy; same weights)."""
    common = dict(blocks=cfg.blocks, timesteps=cfg.timesteps, noise=cfg.noise,
                  noise_seed=cfg.seed, init_seed=cfg.seed, dtype=cfg.dtype,
                  stride4=cfg.stride4, prune=prune)
    if cfg.pretrained:
        return SDBackbone(pretrained=cfg.pretrained, config=cfg.config, **common).eval()
    arch = SD_ARCHS[cfg.arch] if isinstance(cfg.arch, str) else cfg.arch
    if isinstance(cfg.arch, str) and cfg.arch not in SD_ARCHS:
        raise ValueError(f"arch '{cfg.arch}' is not one of {tuple(SD_ARCHS)} (or a dict)")
    return SDBackbone(unet_config=arch['unet'], vae_config=arch['vae'],
                      text=dict(type='learned', num_tokens=77), **common).eval()


class DiffusersReference:
    """Full diffusers forwards, one per timestep, blocks read by forward hooks."""

    def __init__(self, backbone: SDBackbone, blocks, fp16: bool):
        if backbone.pruned:
            raise ValueError('the reference runs the full U-Net: give an SDBackbone built '
                             'with prune=False')
        self.unet = backbone.unet
        self.vae = backbone.vae
        self.context = backbone.prompt_embeds.detach().clone()
        self.scaling = backbone.scaling_factor
        self.dtype = 'fp16' if fp16 else 'fp32'
        self.torch_dtype = torch.float16 if fp16 else torch.float32
        from diffusers import DDPMScheduler
        betas = backbone.schedule.betas.float()
        self.scheduler = DDPMScheduler(num_train_timesteps=len(betas),
                                       trained_betas=betas.tolist())
        self._feats = {}
        for spec in backbone.block_table:
            if spec.index not in blocks:
                continue
            module = self.unet.get_submodule(spec.name)
            if spec.kind != 'middle':   # the block's feature: its last layer's output
                module = (getattr(module, 'attentions', None) or module.resnets)[-1]
            module.register_forward_hook(self._keeper(spec.index))

    def _keeper(self, index):
        def hook(module, args, out):
            self._feats[index] = out[0] if isinstance(out, tuple) else out
        return hook

    def to(self, device, dtype=None):
        dtype = dtype or self.torch_dtype
        for model in (self.unet, self.vae):   # nn.Module.to: diffusers' .to warns on dtypes
            torch.nn.Module.to(model, device, dtype)
        self.context = self.context.to(device, dtype)
        return self

    @torch.no_grad()
    def features(self, x, timesteps, noise=None, stack=True):
        """``{block: (T, B, C, H, W)}`` (or per-t lists with ``stack=False``)."""
        dtype = self.unet.dtype
        latents = self.vae.encode(x.to(dtype)).latent_dist.mean * self.scaling
        out = {}
        for t in timesteps:
            t_batch = torch.full((x.shape[0], ), t, device=x.device, dtype=torch.long)
            eps = torch.randn_like(latents) if noise is None else noise.to(dtype)
            x_t = self.scheduler.add_noise(latents, eps, t_batch)
            self._feats.clear()
            self.unet(x_t, t_batch, encoder_hidden_states=self.context.expand(
                x.shape[0], -1, -1))
            for block, feat in self._feats.items():
                out.setdefault(block, []).append(feat)
        return {b: torch.stack(f) for b, f in out.items()} if stack else out


def run_sd_benchmark(cfg: SDBenchmarkConfig, log: Callable = print) -> dict:
    """Measure both sides; returns the JSON-able result (:func:`speed.format_table` prints
    it)."""
    with torch_threads(cfg.threads):
        return _run(cfg, log)


def _run(cfg, log):
    device = torch.device(cfg.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    backbone = build_sd_backbone(cfg)
    blocks, timesteps = backbone.blocks, backbone.timesteps
    ref_dtype = cfg.ref_dtype if cfg.ref_dtype != 'auto' else \
        ('fp16' if device.type == 'cuda' else 'fp32')
    precision = 'fp32' if cfg.dtype == 'fp32' else cfg.dtype + ' autocast'
    notes = list(cfg.notes) + [
        f"ours: SDBackbone.intermediates, noise='{cfg.noise}', timesteps batched into one "
        f'U-Net forward stopped after block {max(blocks)}, {precision}, SDPA; '
        f'reference: diffusers VAE + full UNet2DConditionModel forward per timestep in '
        f'{ref_dtype}, fresh noise, blocks by forward hooks, under torch.no_grad().']
    weights = cfg.pretrained or f'random ({cfg.arch if isinstance(cfg.arch, str) else "custom"})'
    log(f'SD blocks {blocks} timesteps {timesteps} batch {cfg.batch} size {cfg.size} '
        f'device {device} weights {weights}')
    backbone._check_image(torch.zeros(1, 3, cfg.size, cfg.size))

    generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    check = torch.Generator(device=device).manual_seed(cfg.seed + 2)
    check_full = _random_batch(cfg, cfg.size, device, check)
    images = max(1, min(cfg.check_images, cfg.batch))
    check_x = check_full[:images]

    def make_batch():
        return _random_batch(cfg, cfg.size, device, generator)

    config = asdict(cfg)
    config.pop('notes')
    config.update(arch=cfg.arch if isinstance(cfg.arch, str) else 'custom', channels=None,
                  blocks=list(blocks), timesteps=list(timesteps), compile=False,
                  device=str(device), device_name=_device_name(device), ref_dtype=ref_dtype,
                  out_channels=backbone.out_channels, out_strides=backbone.out_strides,
                  torch=torch.__version__, cuda=torch.version.cuda,
                  date=datetime.datetime.now().isoformat(timespec='seconds'))
    result = dict(config=config, ours={}, reference=None, ratio=None, agreement={},
                  notes=notes)

    backbone.to(device)
    saved_noise = backbone.noise

    @torch.no_grad()
    def run_ours(x):
        return backbone.intermediates(x)

    log(f'ours: {cfg.dtype}: first call, {cfg.warmup} warm-up, {cfg.iters} timed')
    ours = time_side(run_ours, make_batch, cfg, device)
    with torch.no_grad():
        _, flops, per_op = count_flops(backbone.intermediates, make_batch())
    side_stats(ours, flops, per_op, cfg.batch, dtype=cfg.dtype, compile=False,
               forwards_per_batch=1, images_per_forward=cfg.batch * len(timesteps))
    backbone.noise = DiffusionNoise('fixed', cfg.seed)
    with torch.no_grad():
        ours_dtype = _on_cpu(backbone.intermediates(check_full), images)
        saved_dtype, backbone.dtype = backbone.dtype, 'fp32'
        ours_fp32 = _on_cpu(backbone.intermediates(check_x), images)
        backbone.dtype = saved_dtype
        latent_shape = backbone.encode(check_x).shape
    backbone.noise = saved_noise
    result['ours'] = ours
    result['agreement']['ours_vs_ours_fp32'] = cosine_per_block(ours_dtype, ours_fp32, timesteps)
    check_noise = hashed_normal(latent_shape, cfg.seed, device=device)

    if cfg.reference:
        backbone.cpu()   # one side on the device at a time
        if device.type == 'cuda':
            torch.cuda.empty_cache()
        ref = DiffusersReference(build_sd_backbone(cfg, prune=False), blocks,
                                 fp16=ref_dtype == 'fp16')
        ref.to(device, torch.float32)
        ref_fp32 = _on_cpu(ref.features(check_x, timesteps, noise=check_noise), images)
        ref.to(device)
        log(f'reference: diffusers {ref.dtype}: first call, {cfg.warmup} warm-up, '
            f'{cfg.iters} timed')
        reference, ref_as_run = time_reference(ref, timesteps, cfg, make_batch, device,
                                               (check_x, check_noise, images))
        ref.to('cpu')
        _sync(device)
        add_reference(result, reference, (ours_fp32, ours_dtype), (ref_fp32, ref_as_run),
                      timesteps)
    backbone.cpu()
    result['agreement']['check_images'] = images
    return result
