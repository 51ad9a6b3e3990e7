"""Feature-extraction speed of the diffusers latent families (SD, SDXL, DiT, PixArt) against
the diffusers model run the usual way, in one process.

Ours: the family's backbone ``intermediates`` (VAE encode once, q_sample, all timesteps
batched into one network forward stopped after the deepest requested block and pruned after
it, SDPA attention, autocast ``dtype``). Reference (the plain diffusers way): the same VAE and
network (an unpruned copy with the same weights) converted to fp16 on a GPU (fp32 on a CPU;
SDXL's VAE stays fp32, it overflows in fp16), VAE encode once, then per timestep
``DDPMScheduler.add_noise`` with fresh noise and one **full** forward of the
``UNet2DConditionModel`` / ``DiTTransformer2DModel`` / ``PixArtTransformer2DModel`` under
``torch.no_grad()``, with the conditioning a diffusers user passes (:data:`FAMILIES`); the
blocks are read by forward hooks (a transformer block's tokens folded to a map). Both sides
get the same weights (``pretrained`` or random weights of a published arch) and the same
condition; timing, FLOP counting and agreement work as for ADM (:mod:`benchmarks.speed`).
"""
from __future__ import annotations

import datetime
import os.path as osp
import tempfile
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence, Union

import torch

from mmdiffssl.benchmark.flops import count_flops
from mmdiffssl.models.backbones.transformer_backbone import tokens_to_map
from mmdiffssl.models.noise import DiffusionNoise, hashed_normal
from mmdiffssl.models.unets.diffusers_blocks import SD_ARCHS
from benchmarks.speed import (CommonBenchmarkConfig, _device_name, _on_cpu, _random_batch, _sync,
                              add_reference, cosine_per_block, side_stats, time_reference,
                              time_side, torch_threads)

#: published architectures for random weights (speed does not depend on the weights); the
#: transformers' unlisted arguments are diffusers' defaults, which are the XL/2 models'.
_SD_VAE = SD_ARCHS['sd-1.x']['vae']
_XL2 = dict(num_attention_heads=16, attention_head_dim=72, num_layers=28, patch_size=2,
            in_channels=4, out_channels=8)
SDXL_ARCHS = {
    'sdxl-base': dict(
        unet=dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                  block_out_channels=(320, 640, 1280), cross_attention_dim=2048,
                  attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10),
                  use_linear_projection=True, addition_embed_type='text_time',
                  addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
                  down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D',
                                    'CrossAttnDownBlock2D'),
                  up_block_types=('CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D')),
        vae=dict(_SD_VAE, sample_size=1024, scaling_factor=0.13025)),
}
DIT_ARCHS = {
    f'dit-xl-2-{px}': dict(transformer=dict(_XL2, sample_size=px // 8, norm_type='ada_norm_zero',
                                            num_embeds_ada_norm=1000),
                           vae=dict(_SD_VAE, sample_size=px))
    for px in (256, 512)
}
PIXART_ARCHS = {   # use_additional_conditions: diffusers derives it (True at 1024)
    f'pixart-alpha-{px}': dict(transformer=dict(_XL2, sample_size=px // 8,
                                                norm_type='ada_norm_single',
                                                cross_attention_dim=1152, caption_channels=4096),
                               vae=dict(_SD_VAE, sample_size=px))
    for px in (512, 1024)
}


# ---------------------------------------------------------------------- family specifics
def _random_text(cfg, widths):
    """Seeded random text embeddings for random weights, written once to a file in
    ``cfg``'s temporary folder; ``widths`` = {key: shape}."""
    generator = torch.Generator().manual_seed(cfg.seed)
    path = osp.join(cfg.tmpdir, 'text.pt')
    if not osp.isfile(path):
        torch.save({k: torch.randn(*shape, generator=generator) for k, shape in widths.items()},
                   path)
    return dict(type='file', path=path)


def _sd_kwargs(cfg, arch):
    return dict(text=dict(type='learned', num_tokens=77) if arch else dict(type='null'),
                stride4=cfg.stride4)


def _sdxl_kwargs(cfg, arch):
    if cfg.text or not arch:
        text = dict(type='file', path=cfg.text) if cfg.text else dict(type='null')
    else:
        unet = arch['unet']
        pooled = unet['projection_class_embeddings_input_dim'] - \
            6 * unet['addition_time_embed_dim']
        text = _random_text(cfg, dict(prompt_embeds=(77, unet['cross_attention_dim']),
                                            pooled_prompt_embeds=(pooled, )))
    return dict(text=text, stride4=cfg.stride4)


def _dit_kwargs(cfg, arch):
    return dict(class_label='null' if cfg.class_label is None else cfg.class_label)


def _pixart_kwargs(cfg, arch):
    if cfg.text:
        return dict(text=dict(type='file', path=cfg.text))
    if not arch:
        raise ValueError('pixart with pretrained weights needs text= a T5 embedding file '
                         '(tools/write_t5_embeddings.py writes one)')
    width = arch['transformer']['caption_channels']
    return dict(text=_random_text(cfg, dict(prompt_embeds=(120, width))))


def _sd_condition(backbone):
    return dict(context=backbone.prompt_embeds)


def _sdxl_condition(backbone):
    return dict(context=backbone.prompt_embeds, pooled=backbone.pooled_embeds)


def _dit_condition(backbone):
    label = backbone.class_label
    if label == 'sample':
        raise ValueError("the benchmark takes a fixed class label or 'null'")
    return dict(label=torch.tensor(backbone.num_classes if label == 'null' else label))


def _pixart_condition(backbone):
    return dict(context=backbone.prompt_embeds, mask=backbone.prompt_mask)


def _sd_inputs(cond, x, network):
    return dict(encoder_hidden_states=cond['context'].expand(len(x), -1, -1))


def _sdxl_inputs(cond, x, network):
    """The pipeline's ``added_cond_kwargs``: pooled text and (original size, crop 0, 0,
    target size) of the image, in pixels."""
    height, width = x.shape[-2:]
    time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=cond['pooled'].dtype,
                            device=x.device)
    return dict(_sd_inputs(cond, x, network), added_cond_kwargs=dict(
        text_embeds=cond['pooled'].expand(len(x), -1), time_ids=time_ids.expand(len(x), -1)))


def _dit_inputs(cond, x, network):
    return dict(class_labels=cond['label'].expand(len(x)))


def _pixart_inputs(cond, x, network):
    """Raw T5 embeddings with their ``(B, L)`` mask, and resolution/aspect ratio of the image
    where the model uses them (as the PixArt pipelines pass them)."""
    added = dict(resolution=None, aspect_ratio=None)
    if network.use_additional_conditions:
        height, width = x.shape[-2:]
        dtype = cond['context'].dtype
        added = dict(resolution=torch.tensor([[height, width]], dtype=dtype,
                                             device=x.device).expand(len(x), -1),
                     aspect_ratio=torch.tensor([[height / width]], dtype=dtype,
                                               device=x.device).expand(len(x), -1))
    return dict(encoder_hidden_states=cond['context'].expand(len(x), -1, -1),
                encoder_attention_mask=cond['mask'].expand(len(x), -1), added_cond_kwargs=added)


@dataclass(frozen=True)
class Family:
    """What differs between the latent families: the backbone, its random-weight archs, its
    build arguments (``kwargs(cfg, arch)``; ``arch`` None with ``pretrained``), the condition
    tensors the reference copies from it and the network forward's keyword arguments built
    from them (``inputs(cond, x, network)``, ``x`` the image batch)."""
    backbone: str
    archs: dict
    kwargs: Callable
    condition: Callable
    inputs: Callable
    fp16_vae: bool = True   # the reference may run the VAE in fp16

    @property
    def default_arch(self):
        return next(iter(self.archs))


FAMILIES = {
    'sd': Family('SDBackbone', SD_ARCHS, _sd_kwargs, _sd_condition, _sd_inputs),
    'sdxl': Family('SDXLBackbone', SDXL_ARCHS, _sdxl_kwargs, _sdxl_condition, _sdxl_inputs,
                   fp16_vae=False),
    'dit': Family('DiTBackbone', DIT_ARCHS, _dit_kwargs, _dit_condition, _dit_inputs),
    'pixart': Family('PixArtBackbone', PIXART_ARCHS, _pixart_kwargs, _pixart_condition,
                     _pixart_inputs),
}


# ---------------------------------------------------------------------- the driver
@dataclass
class LatentBenchmarkConfig(CommonBenchmarkConfig):
    """What to measure for a latent family (``tools/benchmark.py --backbone sd|sdxl|dit|
    pixart``). ``arch``, ``blocks`` and ``size`` default to the family's first preset, its
    backbone's default blocks and its native resolution."""
    family: str = 'sd'
    arch: Union[str, dict, None] = None
    blocks: Union[Sequence, str, None] = None
    timesteps: Sequence[int] = (100, )
    batch: int = 16
    iters: int = 10
    warmup: int = 2
    check_images: int = 2
    pretrained: Optional[str] = None
    config: Optional[str] = None
    stride4: Optional[str] = None
    text: Optional[str] = None
    class_label: Optional[int] = None
    tmpdir: Optional[str] = None   # set by the run (random text files)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family '{self.family}' is not one of {tuple(FAMILIES)}")
        archs = FAMILIES[self.family].archs
        if self.arch is None:
            self.arch = FAMILIES[self.family].default_arch
        if isinstance(self.arch, str) and self.arch not in archs:
            raise ValueError(f"arch '{self.arch}' is not one of {tuple(archs)} (or a dict)")


def build_latent_backbone(cfg: LatentBenchmarkConfig, prune=True):
    """The family's backbone: from ``pretrained``, or random weights of ``arch`` (a preset
    name or ``dict(unet|transformer=..., vae=...)``). ``prune=False`` keeps the whole network
    (the reference's copy; same weights)."""
    from mmdiffssl.models import backbones
    family = FAMILIES[cfg.family]
    common = dict(blocks=cfg.blocks, timesteps=cfg.timesteps, noise=cfg.noise,
                  noise_seed=cfg.seed, init_seed=cfg.seed, dtype=cfg.dtype, prune=prune)
    cls = getattr(backbones, family.backbone)
    if cfg.pretrained:
        return cls(pretrained=cfg.pretrained, config=cfg.config, **common,
                   **family.kwargs(cfg, None)).eval()
    arch = family.archs[cfg.arch] if isinstance(cfg.arch, str) else cfg.arch
    configs = {f'{name}_config': value for name, value in arch.items()}
    return cls(**configs, **common, **family.kwargs(cfg, arch)).eval()


class DiffusersReference:
    """Full diffusers forwards, one per timestep, blocks read by forward hooks."""

    def __init__(self, backbone, family: Family, blocks, fp16: bool):
        if backbone.pruned:
            raise ValueError('the reference runs the full network: give a backbone built '
                             'with prune=False')
        self.family = family
        self.network = backbone.network
        self.vae = backbone.vae
        self.cond = {k: v.detach().clone() for k, v in family.condition(backbone).items()}
        self.scaling = float(backbone.vae.config.scaling_factor)
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
            module = self.network.get_submodule(spec.name)
            if spec.kind != 'middle':   # a U-Net level's feature: its last layer's output
                module = (getattr(module, 'attentions', None) or module.resnets)[-1]
            module.register_forward_hook(self._keeper(spec.index))

    def _keeper(self, index):
        def hook(module, args, out):
            self._feats[index] = out[0] if isinstance(out, tuple) else out
        return hook

    def to(self, device, dtype=None):
        dtype = dtype or self.torch_dtype
        vae_dtype = dtype if self.family.fp16_vae else torch.float32
        # nn.Module.to: diffusers' .to warns on dtypes
        torch.nn.Module.to(self.network, device, dtype)
        torch.nn.Module.to(self.vae, device, vae_dtype)
        self.cond = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device)
                     for k, v in self.cond.items()}
        return self

    @torch.no_grad()
    def features(self, x, timesteps, noise=None, stack=True):
        """``{block: (T, B, C, h, w)}`` (or per-t lists with ``stack=False``)."""
        dtype = self.network.dtype
        latents = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mean * self.scaling
        latents = latents.to(dtype)
        kwargs = self.family.inputs(self.cond, x, self.network)
        patch = getattr(self.network.config, 'patch_size', None) or 1
        height, width = latents.shape[-2] // patch, latents.shape[-1] // patch
        out = {}
        for t in timesteps:
            t_batch = torch.full((x.shape[0], ), t, device=x.device, dtype=torch.long)
            eps = torch.randn_like(latents) if noise is None else noise.to(dtype)
            x_t = self.scheduler.add_noise(latents, eps, t_batch)
            self._feats.clear()
            self.network(x_t, timestep=t_batch, **kwargs)
            for block, feat in self._feats.items():
                if feat.dim() == 3:   # transformer tokens (B, h * w, D)
                    feat = tokens_to_map(feat, height, width)
                out.setdefault(block, []).append(feat)
        return {b: torch.stack(f) for b, f in out.items()} if stack else out


def run_latent_benchmark(cfg: LatentBenchmarkConfig, log: Callable = print) -> dict:
    """Measure both sides; returns the JSON-able result (:func:`speed.format_table` prints
    it)."""
    with torch_threads(cfg.threads), tempfile.TemporaryDirectory() as tmpdir:
        cfg.tmpdir = tmpdir
        try:
            return _run(cfg, log)
        finally:
            cfg.tmpdir = None


def _run(cfg, log):
    family = FAMILIES[cfg.family]
    device = torch.device(cfg.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    backbone = build_latent_backbone(cfg)
    blocks, timesteps = backbone.blocks, backbone.timesteps
    size = cfg.size or backbone.native_resolution
    ref_dtype = cfg.ref_dtype if cfg.ref_dtype != 'auto' else \
        ('fp16' if device.type == 'cuda' else 'fp32')
    precision = 'fp32' if cfg.dtype == 'fp32' else cfg.dtype + ' autocast'
    network = type(backbone.network).__name__
    vae_note = '' if family.fp16_vae else ' (VAE in fp32)'
    notes = list(cfg.notes) + [
        f"ours: {family.backbone}.intermediates, noise='{cfg.noise}', timesteps batched into "
        f'one forward stopped after block {max(blocks)}, {precision}, SDPA; reference: '
        f'diffusers VAE + full {network} forward per timestep in {ref_dtype}{vae_note}, fresh '
        'noise, blocks by forward hooks, under torch.no_grad().']
    weights = cfg.pretrained or f'random ({cfg.arch if isinstance(cfg.arch, str) else "custom"})'
    log(f'{cfg.family} blocks {blocks} timesteps {timesteps} batch {cfg.batch} size {size} '
        f'device {device} weights {weights}')
    backbone._check_image(torch.zeros(1, 3, size, size))

    generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    check = torch.Generator(device=device).manual_seed(cfg.seed + 2)
    check_full = _random_batch(cfg, size, device, check)
    images = max(1, min(cfg.check_images, cfg.batch))
    check_x = check_full[:images]

    def make_batch():
        return _random_batch(cfg, size, device, generator)

    config = asdict(cfg)
    for key in ('notes', 'tmpdir'):
        config.pop(key)
    config.update(arch=cfg.arch if isinstance(cfg.arch, str) else 'custom', size=size,
                  channels=None, blocks=list(blocks), timesteps=list(timesteps), compile=False,
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
        ref = DiffusersReference(build_latent_backbone(cfg, prune=False), family, blocks,
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
