"""Feature-extraction speed of :class:`ADMBackbone` against guided-diffusion, in one process.

Both sides get the same (re-drawn or loaded) weights. Ours runs ``ADMBackbone.intermediates``
(q_sample, timesteps batched into one forward, stop after the deepest requested block,
autocast ``dtype``, optionally ``torch.compile``). The reference runs OpenAI's ``UNetModel``
as the paper's code does (see :mod:`benchmarks.reference`): one full forward per
timestep, fp16 torso on GPUs, fp32 on CPUs.

Every timed iteration gets a new batch of random pixels (``torch.rand`` on the device,
outside the timed region) and is synchronised, so nothing is reused or overlapped between
iterations. The first call (which includes ``torch.compile``) and the warm-up calls are
timed separately. Only one side's model is on the device at a time, so peak memory
(``torch.cuda.max_memory_allocated`` over the timed iterations) is that side's alone.
"""
from __future__ import annotations

import contextlib
import datetime
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from mmdiffssl.models.backbones import ADMBackbone
from mmdiffssl.models.noise import DiffusionNoise, hashed_normal
from mmdiffssl.models.unets import adm_flags_from, build_adm_unet
from mmdiffssl.models.unets.adm import AttentionBlock

from mmdiffssl.benchmark.flops import adm_flops, count_flops
from benchmarks.reference import GuidedDiffusionReference

GIB = 2**30


@dataclass
class CommonBenchmarkConfig:
    """The fields every benchmark has (``tools/benchmark.py --help``); ADM's defaults."""
    arch: Union[str, dict] = 'adm-256-uncond'
    blocks: Union[Sequence[int], str] = (24, )
    timesteps: Sequence[int] = (150, )
    batch: int = 64
    size: Optional[int] = None
    dtype: str = 'bf16'
    device: Optional[str] = None
    iters: int = 20
    warmup: int = 3
    noise: str = 'fixed'
    ref_dtype: str = 'auto'
    reference: bool = True
    check_images: int = 4
    seed: int = 0
    threads: Optional[int] = None
    command: Optional[str] = None
    notes: list = field(default_factory=list)


@dataclass
class BenchmarkConfig(CommonBenchmarkConfig):
    """What to measure for ADM (see ``tools/benchmark.py --help`` for each field)."""
    channels: Optional[int] = None
    compile: bool = False
    compile_mode: Optional[str] = None
    cuda_graphs: bool = False
    checkpoint: Optional[str] = None
    class_label: Optional[int] = None
    cudnn_benchmark: bool = False


def resolve_flags(arch, channels=None):
    """Flags of ``arch``; ``channels`` narrows the U-Net, keeping its head count where the
    attention widths allow (fixed head widths shrink in proportion, rounded down to a width
    that divides every attention layer's channels)."""
    flags = adm_flags_from(arch)
    if channels:
        scaled = flags['num_head_channels'] * int(channels) // flags['num_channels']
        flags['num_channels'] = int(channels)
        if flags['num_head_channels'] != -1:
            with torch.device('meta'):
                unet = build_adm_unet(dict(flags, num_head_channels=-1, num_heads=1))
            widths = {m.qkv.in_channels for m in unet.modules() if isinstance(m, AttentionBlock)}
            head = max(scaled, 1)
            while any(w % head for w in widths):
                head -= 1
            flags['num_head_channels'] = head
    return flags


def resolve_blocks(flags, blocks):
    """'all' -> the last block (every block runs); ints and 'pyramid' pass through."""
    if isinstance(blocks, str):
        if blocks == 'all':
            with torch.device('meta'):
                return (build_adm_unet(flags).num_blocks, )
        return blocks
    return tuple(int(b) for b in blocks)


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _random_batch(cfg, size, device, generator):
    return torch.rand(cfg.batch, 3, size, size, device=device, generator=generator) * 2 - 1


@contextlib.contextmanager
def _eager(backbone, dtype=None):
    """Run ``backbone`` without compile (and in ``dtype`` if given) for a while."""
    saved = backbone.compile_kwargs, backbone.dtype
    backbone.compile_kwargs = None
    backbone.dtype = dtype or backbone.dtype
    try:
        yield backbone
    finally:
        backbone.compile_kwargs, backbone.dtype = saved


@contextlib.contextmanager
def _fixed_noise(backbone, seed):
    """Give ``backbone`` 'fixed' noise for a while (the agreement inputs)."""
    saved = backbone.noise
    if saved.mode != 'fixed' or saved.seed != seed:
        backbone.noise = DiffusionNoise('fixed', seed)
    try:
        yield backbone
    finally:
        backbone.noise = saved


def time_side(run: Callable, make_batch: Callable, cfg: BenchmarkConfig, device) -> dict:
    """First call, warm-up and timed iterations of ``run(batch)``; each gets new pixels."""
    x = make_batch()
    _sync(device)
    start = time.perf_counter()
    out = run(x)
    _sync(device)
    first_call = time.perf_counter() - start
    del out
    start = time.perf_counter()
    for _ in range(cfg.warmup):
        out = run(make_batch())
        del out
    _sync(device)
    warmup = time.perf_counter() - start

    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        static = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(cfg.iters):
        x = make_batch()
        _sync(device)
        start = time.perf_counter()
        out = run(x)
        _sync(device)
        times.append(time.perf_counter() - start)
        del out, x
    result = dict(
        first_call_s=first_call,
        warmup_s=warmup,
        warmup_iters=cfg.warmup,
        iters=cfg.iters,
        latency_ms=1e3 * sum(times) / len(times),
        latency_median_ms=1e3 * statistics.median(times),
        latency_min_ms=1e3 * min(times),
        img_per_s=cfg.batch * len(times) / sum(times),
        peak_mem_gib=None,
        static_mem_gib=None,
    )
    if device.type == 'cuda':
        result['peak_mem_gib'] = torch.cuda.max_memory_allocated(device) / GIB
        result['static_mem_gib'] = static / GIB
    return result


def cosine_per_block(a: dict, b: dict, timesteps) -> dict:
    """``{block: (T, B, ...)}`` twice -> per block the cosine similarity of each image's
    flattened feature: min and mean over images and timesteps, and min per timestep."""
    result = {}
    for block in a:
        cos = F.cosine_similarity(a[block].flatten(2).double(), b[block].flatten(2).double(),
                                  dim=-1)  # (T, B)
        result[str(block)] = dict(
            min=cos.min().item(), mean=cos.mean().item(),
            per_t={str(t): cos[i].min().item() for i, t in enumerate(timesteps)})
    return result


def _on_cpu(feats, images):
    return {b: f[:, :images].float().cpu() for b, f in feats.items()}


def _gflop(flops, batch):
    return None if flops is None else flops / batch / 1e9


@contextlib.contextmanager
def torch_threads(threads):
    """torch's CPU threads set to ``threads`` (if given) for a while."""
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def side_stats(side, flops, per_op, batch, **fields):
    """``side`` (from :func:`time_side`) completed with its FLOP counts and ``fields``."""
    side.update(fields, flops_per_batch=flops, flops_by_op=per_op,
                gflop_per_image=_gflop(flops, batch),
                tflops=flops / (side['latency_ms'] / 1e3) / 1e12)
    return side


def speed_ratio(ours, reference):
    """ours / reference for img/s, FLOPs and peak memory (None off CUDA)."""
    return dict(
        img_per_s=ours['img_per_s'] / reference['img_per_s'],
        flops=ours['flops_per_batch'] / reference['flops_per_batch'],
        peak_mem=(ours['peak_mem_gib'] / reference['peak_mem_gib']
                  if ours['peak_mem_gib'] and reference['peak_mem_gib'] else None))


def time_reference(ref, timesteps, cfg, make_batch, device, check, **fields):
    """Time and count a reference side, ``ref.features(x, timesteps, stack=False)`` (one
    forward per timestep).

    Args:
        check (tuple): ``(images, noise, n)``: the agreement batch, its noise and how many
            of its images to keep.

    Returns:
        (side dict, the reference's features of the agreement batch as run)
    """
    def run_ref(x):
        return ref.features(x, timesteps, stack=False)

    side = time_side(run_ref, make_batch, cfg, device)
    _, flops, per_op = count_flops(run_ref, make_batch())
    check_x, check_noise, images = check
    as_run = _on_cpu(ref.features(check_x, timesteps, noise=check_noise), images)
    side_stats(side, flops, per_op, cfg.batch, dtype=ref.dtype, compile=False,
               forwards_per_batch=len(timesteps), images_per_forward=cfg.batch, **fields)
    return side, as_run


def add_reference(result, reference, ours, refs, timesteps):
    """Put the reference side, the agreements with it and the ratios into ``result``.

    ``ours`` = (ours fp32, ours as run), ``refs`` = (reference fp32, reference as run).
    """
    result['reference'] = reference
    result['agreement']['ours_fp32_vs_reference_fp32'] = cosine_per_block(
        ours[0], refs[0], timesteps)
    result['agreement']['ours_vs_reference_as_run'] = cosine_per_block(
        ours[1], refs[1], timesteps)
    result['ratio'] = speed_ratio(result['ours'], reference)


def run_benchmark(cfg: BenchmarkConfig, log: Callable = print) -> dict:
    """Measure both sides (see the module docstring); returns the JSON-able result.

    ``cfg.threads`` sets torch's CPU threads for the run (restored afterwards).
    """
    with torch_threads(cfg.threads):
        return _run_benchmark(cfg, log)


def _run_benchmark(cfg, log):
    device = torch.device(cfg.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    if cfg.cuda_graphs and device.type != 'cuda':
        raise ValueError('--cuda-graphs needs a CUDA device')
    if cfg.dtype not in ('fp32', 'bf16', 'fp16'):
        raise ValueError(f"dtype='{cfg.dtype}' is not fp32, bf16 or fp16")
    flags = resolve_flags(cfg.arch, cfg.channels)
    size = cfg.size or flags['image_size']
    class_label = cfg.class_label
    if flags['class_cond'] and class_label is None:
        class_label = 0
    ref_dtype = cfg.ref_dtype
    if ref_dtype == 'auto':
        ref_dtype = 'fp16' if device.type == 'cuda' and flags['use_fp16'] else 'fp32'
    notes = list(cfg.notes)
    if device.type == 'cpu':
        notes.append('CPU run: the reference runs in fp32 (guided-diffusion converts its '
                     'torso to fp16 only for GPUs); peak memory is n/a on CPU.')
    notes.append(f"ours: noise='{cfg.noise}' q_sample, timesteps batched into one forward, "
                 'stop after the deepest requested block; reference: guided-diffusion '
                 'q_sample with fresh randn_like noise, one full forward per timestep, '
                 'block outputs read by forward hooks, under torch.no_grad().')

    compile_arg = False
    if cfg.compile:
        compile_arg = {'mode': cfg.compile_mode} if cfg.compile_mode else True
    build = dict(arch=flags, checkpoint=cfg.checkpoint, blocks=resolve_blocks(flags, cfg.blocks),
                 timesteps=cfg.timesteps, noise=cfg.noise, noise_seed=cfg.seed,
                 class_label=class_label if flags['class_cond'] else None, dtype=cfg.dtype,
                 random_init='redraw', init_seed=cfg.seed)
    backbone = ADMBackbone(**build, compile=compile_arg, cuda_graphs=cfg.cuda_graphs).eval()
    blocks, timesteps = backbone.blocks, backbone.timesteps
    weights = 'loaded from ' + cfg.checkpoint if cfg.checkpoint else \
        f're-drawn (redraw_parameters_, seed {cfg.seed})'
    log(f'arch {flags}\nblocks {blocks}  timesteps {timesteps}  batch {cfg.batch}  size {size}'
        f'  device {device}  weights {weights}')

    generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    check = torch.Generator(device=device).manual_seed(cfg.seed + 2)
    check_full = _random_batch(cfg, size, device, check)
    images = max(1, min(cfg.check_images, cfg.batch))
    check_x = check_full[:images]
    check_noise = hashed_normal(check_x.shape, cfg.seed, device=device)

    def make_batch():
        return _random_batch(cfg, size, device, generator)

    result = dict(config=_config_dict(cfg, flags, size, blocks, timesteps, device, ref_dtype),
                  ours={}, reference=None, ratio=None, agreement={}, notes=notes)

    # ------------------------------------------------------------------ ours
    backbone.to(device)

    @torch.no_grad()
    def run_ours(x):
        return backbone.intermediates(x)

    log(f'ours: {cfg.dtype}{" compiled" if cfg.compile else ""}: first call'
        f'{" (compiles)" if cfg.compile else ""}, {cfg.warmup} warm-up, {cfg.iters} timed')
    ours = time_side(run_ours, make_batch, cfg, device)
    with _eager(backbone), torch.no_grad():
        _, flops, per_op = count_flops(backbone.intermediates, make_batch())
    side_stats(ours, flops, per_op, cfg.batch, dtype=cfg.dtype, compile=cfg.compile,
               forwards_per_batch=1, images_per_forward=cfg.batch * len(timesteps),
               meta_gflop_per_image=adm_flops(flags, size, blocks) * len(timesteps) / 1e9)
    with torch.no_grad(), _fixed_noise(backbone, cfg.seed):
        ours_dtype = _on_cpu(backbone.intermediates(check_full), images)
        with _eager(backbone, 'fp32'):
            ours_fp32 = _on_cpu(backbone.intermediates(check_x), images)
    result['ours'] = ours
    result['agreement']['ours_vs_ours_fp32'] = cosine_per_block(ours_dtype, ours_fp32, timesteps)
    backbone.cpu()
    if device.type == 'cuda':
        torch.cuda.empty_cache()

    # ------------------------------------------------------------------ reference
    if cfg.reference:
        ref = GuidedDiffusionReference(flags, blocks, backbone.block_table,
                                       fp16=ref_dtype == 'fp16', class_label=class_label)
        # the same weights, unpruned (ours drops the blocks it never runs)
        full = ADMBackbone(**build, prune=False).unet.state_dict()
        ref.model.load_state_dict(full, strict=True)
        del full
        ref.to(device)
        with ref.fp32():
            ref_fp32 = _on_cpu(ref.features(check_x, timesteps, noise=check_noise), images)
        ref.convert_to_fp16()
        log(f'reference: guided-diffusion {ref.dtype}: first call, {cfg.warmup} warm-up, '
            f'{cfg.iters} timed')

        reference, ref_as_run = time_reference(
            ref, timesteps, cfg, make_batch, device, (check_x, check_noise, images),
            meta_gflop_per_image=adm_flops(flags, size) * len(timesteps) / 1e9)
        ref.to('cpu')
        add_reference(result, reference, (ours_fp32, ours_dtype), (ref_fp32, ref_as_run),
                      timesteps)
    result['agreement']['check_images'] = images
    return result


def _device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    name = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return f'{name} ({torch.get_num_threads()} torch threads)'


def _config_dict(cfg, flags, size, blocks, timesteps, device, ref_dtype):
    config = asdict(cfg)
    config.pop('notes')
    config.update(flags=flags, size=size, blocks=list(blocks), timesteps=list(timesteps),
                  device=str(device), device_name=_device_name(device), ref_dtype=ref_dtype,
                  torch=torch.__version__, cuda=torch.version.cuda,
                  date=datetime.datetime.now().isoformat(timespec='seconds'))
    return config


# ---------------------------------------------------------------------- table
def _fmt(value, spec):
    return 'n/a' if value is None else format(value, spec)


def format_table(result: dict) -> str:
    """The result as a plain-text table (throughput, FLOPs, memory, agreement)."""
    cfg = result['config']
    lines = [
        f"arch {cfg['arch'] if isinstance(cfg['arch'], str) else 'custom'}"
        f"{' channels ' + str(cfg['channels']) if cfg['channels'] else ''}, "
        f"blocks {','.join(map(str, cfg['blocks']))}, "
        f"t {','.join(map(str, cfg['timesteps']))}, batch {cfg['batch']}, "
        f"{cfg['size']}x{cfg['size']}, {cfg['device_name']}, torch {cfg['torch']}",
        '',
        f"{'side':<10} {'dtype':<5} {'compile':<7} {'fwd/batch':>9} {'img/s':>9} "
        f"{'ms/batch':>9} {'GFLOP/img':>10} {'TFLOP/s':>8} {'peak GiB':>8} "
        f"{'1st call s':>10} {'warm-up s':>9}",
    ]
    sides = [('ours', result['ours'])]
    if result['reference']:
        sides.append(('reference', result['reference']))
    for name, side in sides:
        lines.append(
            f"{name:<10} {side['dtype']:<5} {'yes' if side['compile'] else 'no':<7} "
            f"{side['forwards_per_batch']:>9} {side['img_per_s']:>9.2f} "
            f"{side['latency_ms']:>9.1f} {side['gflop_per_image']:>10.2f} "
            f"{side['tflops']:>8.3f} {_fmt(side['peak_mem_gib'], '8.2f'):>8} "
            f"{side['first_call_s']:>10.2f} {side['warmup_s']:>9.2f}")
    ratio = result['ratio']
    if ratio:
        peak = 'n/a' if ratio['peak_mem'] is None else f"{ratio['peak_mem']:.3f}x"
        lines.append(
            f"{'ours/ref':<10} {'':<5} {'':<7} {'':>9} {ratio['img_per_s']:>8.2f}x "
            f"{'':>9} {ratio['flops']:>9.3f}x {'':>8} {peak:>8}")
    agreement = result['agreement']
    ours = f"ours {cfg['dtype']}{' compiled' if cfg['compile'] else ''}"
    labels = {
        'ours_vs_ours_fp32': f'{ours} vs ours fp32 eager',
        'ours_fp32_vs_reference_fp32': 'ours fp32 eager vs reference fp32',
        'ours_vs_reference_as_run': (f"{ours} vs reference {result['reference']['dtype']}"
                                     if result['reference'] else ''),
    }
    lines += ['', f"cosine similarity per block (min over {agreement['check_images']} images "
              'x timesteps)',
              f"{'':<40}" + ''.join(f'{"block " + str(b):>12}' for b in cfg['blocks'])]
    for key, label in labels.items():
        if key in agreement:
            lines.append(f'{label:<40}' + ''.join(
                f"{agreement[key][str(b)]['min']:>12.6f}" for b in cfg['blocks']))
    lines += [''] + [f'note: {n}' for n in result['notes']]
    return '\n'.join(lines)
