"""Device run 1 (issue 21): ADM feature-extraction speed and memory, ours vs guided-diffusion.

Run by ``tools/device/speed.sh`` (see ``tools/device/README.md``)::

    python tools/device/speed.py --out $OUT [--deadline-s 200]
    python tools/device/speed.py --smoke --out /tmp/speed   # CPU, tiny arch, same path

A preflight (imports, one tiny forward on the device with the models built there), then
the rows of :data:`ROWS` in priority order, each measured by ``benchmarks.run_benchmark``
(ours and the reference in this process; both load the same re-drawn weights, drawn once
by :func:`save_weights`) and written to ``--out`` as soon as it finishes;
no row starts after ``--deadline-s`` seconds. Files in ``--out`` (at most 8 come back
from the device):

- ``preflight.json``: versions, device, the tiny forward's output shape and time;
- ``results.json``: every finished row's full result (rewritten after each row);
- ``summary.md``: one table line per row against the targets;
- ``logs.tar.gz``: ``log.txt``, each row's JSON and its ``torch.profiler`` summary of our
  side (``ROW_profile.txt``; the summary marks the rows that miss a target).
"""
import json
import os.path as osp
import shutil
import sys
import tempfile
import time
import traceback

START = time.perf_counter()  # before torch's import: speed.sh's limit counts from here

import torch  # noqa: E402

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/: benchmarks

import device_run  # noqa: E402  tools/device/device_run.py
from benchmarks.speed import BenchmarkConfig, resolve_flags, run_benchmark  # noqa: E402

# (name, blocks, timesteps, compile, target): priority order
ROWS = (
    ('block24_compiled', (24, ), (150, ), True, 'block24'),
    ('full_compiled', 'all', (150, ), True, 'full'),
    ('difformer_compiled', (19, 24, 30), (90, 150, 300), True, 'difformer'),
    ('block24_eager', (24, ), (150, ), False, 'block24'),
    ('full_eager', 'all', (150, ), False, 'full'),
    ('difformer_eager', (19, 24, 30), (90, 150, 300), False, 'difformer'),
)
# ours / reference img/s at least (docs/benchmark.md); block 24's peak memory at most 1/3
SPEED_TARGETS = dict(full=3.0, block24=10.0, difformer=4.0)
MEMORY_TARGET = 1 / 3
# the device run (issue 21) and the CPU smoke run of the same path
SETTINGS = dict(
    device=dict(channels=None, size=256, batch=64, dtype='bf16', iters=5, warmup=2,
                check_images=4,
                compile_backend=None, device='cuda', threads=None),
    # fp32: bf16 autocast on a CPU without AVX-512 BF16 is about 20x slower
    smoke=dict(channels=32, size=32, batch=2, dtype='fp32', iters=1, warmup=0,
               check_images=1,
               compile_backend='aot_eager', device='cpu', threads=1),
)
# adm-256-uncond narrowed to 32 channels, run at 32 px
PREFLIGHT_ARCH = dict(preset='adm-256-uncond', num_channels=32, num_head_channels=8)


def verdict(result, target):
    """The row's checks against the targets: ``{check: (value, limit, met)}``."""
    ratio = result['ratio']
    checks = dict(speed=(ratio['img_per_s'], SPEED_TARGETS[target],
                         ratio['img_per_s'] >= SPEED_TARGETS[target]))
    if target == 'block24' and ratio['peak_mem'] is not None:
        checks['memory'] = (ratio['peak_mem'], MEMORY_TARGET, ratio['peak_mem'] <= MEMORY_TARGET)
    return checks


def _min_cos(agreement, key):
    return min(v['min'] for v in agreement[key].values())


def summary(rows):
    """The rows as a markdown table against the targets."""
    lines = ['Ours: ADMBackbone, autocast as the row says, unrun blocks pruned (`prune`); '
             'reference: guided-diffusion as published (fp16 torso on a GPU, fp32 on a CPU).',
             '',
             '| row | dtype | ours img/s | ref img/s | ours/ref (target) | ours / ref peak GiB '
             '(ratio, target) | ours / ref TFLOP/s | ours 1st call s | cos ours vs fp32 / '
             'fp32 vs ref | met |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for row in rows:
        if 'error' in row:
            lines.append(f"| {row['name']} | | {row['error']} | | | | | | | |")
            continue
        res, checks = row['result'], row['checks']
        ours, ref = res['ours'], res['reference']
        speed = checks['speed']
        mem = 'n/a'
        if ours['peak_mem_gib'] is not None:
            mem = f"{ours['peak_mem_gib']:.2f} / {ref['peak_mem_gib']:.2f} " \
                  f"({res['ratio']['peak_mem']:.3f}"
            mem += f", <= {MEMORY_TARGET:.3f})" if 'memory' in checks else ')'
        met = ', '.join(f"{k} {'yes' if c[2] else 'NO'}" for k, c in checks.items())
        cos = (f"{_min_cos(res['agreement'], 'ours_vs_ours_fp32'):.6f} / "
               f"{_min_cos(res['agreement'], 'ours_fp32_vs_reference_fp32'):.6f}")
        lines.append(
            f"| {row['name']} | {ours['dtype']} | {ours['img_per_s']:.1f} | "
            f"{ref['img_per_s']:.1f} | "
            f"{speed[0]:.2f}x (>= {speed[1]:g}x) | {mem} | {ours['tflops']:.3g} / "
            f"{ref['tflops']:.3g} | {ours['first_call_s']:.1f} | {cos} | {met} |")
    return '\n'.join(lines)


class Recorder(device_run.Recorder):
    """The shared files (:class:`device_run.Recorder`), ``summary.md`` as :func:`summary`."""
    summary = staticmethod(summary)


def preflight(rec, setting):
    """Imports, versions and one tiny forward with the model built on the device.

    Returns the preflight's record; ``build_on_device`` is False (the rows then build on
    the CPU and move the models) where building under ``torch.device(device)`` failed.
    """
    start = time.perf_counter()
    info = dict(python=sys.version.split()[0], torch=torch.__version__, cuda=torch.version.cuda,
                device=setting['device'])
    import mmengine
    import mmdiffssl
    from benchmarks.reference import import_guided_diffusion
    from mmdiffssl.models.backbones import ADMBackbone
    import_guided_diffusion()
    info.update(mmengine=mmengine.__version__, mmdiffssl=osp.dirname(mmdiffssl.__file__))
    device = torch.device(setting['device'])
    if device.type == 'cuda':
        info['device_name'] = torch.cuda.get_device_name(device)
    build = dict(arch=PREFLIGHT_ARCH, blocks=(24, ), random_init='redraw', dtype='bf16')
    info['build_on_device'] = True
    try:
        with torch.device(device):
            backbone = ADMBackbone(**build).eval()
    except Exception as err:  # fall back to the CPU build, which the benchmark knows
        rec.log(traceback.format_exc())
        info.update(build_on_device=False, build_error=f'{type(err).__name__}: {err}'[:300])
        backbone = ADMBackbone(**build).eval().to(device)
    x = torch.rand(2, 3, 32, 32, device=device) * 2 - 1
    with torch.no_grad():
        feats = backbone.intermediates(x)
    feat = feats[24]  # (T=1, B, C, H, W)
    if not torch.isfinite(feat).all():
        raise RuntimeError('the preflight forward gave non-finite features')
    info.update(param_device=str(next(backbone.parameters()).device),
                feature_shape=list(feat.shape), feature_device=str(feat.device),
                seconds=time.perf_counter() - start)
    rec.write_json('preflight.json', info)
    rec.log('preflight', json.dumps(info))
    return info


def save_weights(setting, path, seed=0):
    """adm-256-uncond (narrowed as ``setting`` says) re-drawn once (on the CPU, where the
    re-draw samples anyway) and saved to ``path``: the rows load these weights instead of
    each drawing its 552M numbers twice (ours and the reference's copy)."""
    from mmdiffssl.models.backbones import ADMBackbone
    flags = resolve_flags('adm-256-uncond', setting['channels'])
    unet = ADMBackbone(arch=flags, blocks=(24, ), prune=False, random_init='redraw',
                       init_seed=seed).unet
    torch.save(unet.state_dict(), path)
    return path


def guess_s(last, timesteps):
    """Seconds a row of ``timesteps`` timesteps likely takes: ``last`` (``(seconds,
    timesteps)`` of the last finished row of its kind; None: no guess) scaled by
    1 + (timesteps - 1) / 2 (the reference runs one forward per timestep)."""
    if last is None:
        return None
    seconds, steps = last
    return seconds * (1 + (timesteps - 1) / 2) / (1 + (steps - 1) / 2)


def skip_reason(elapsed, last, timesteps, deadline_s, limit_s=None):
    """Why a row is not started at ``elapsed`` s (None: start it); see :func:`guess_s`."""
    return device_run.skip_reason(elapsed, deadline_s, limit_s, guess_s(last, timesteps))


def run_rows(rec, setting, deadline_s, start, rows=ROWS, checkpoint=None, limit_s=None,
             build_on_device=True):
    """Each row in order (:func:`device_run.run_rows`: a failing row is recorded and
    skipped); a row's guess is the last finished row of the same kind (compiled or eager)
    scaled by its timesteps (:func:`guess_s`)."""
    last = {}  # compiled? -> (seconds, timesteps) of the last finished row of that kind

    def guess(row):
        _, _, timesteps, compile_, _ = row
        return guess_s(last.get(compile_), len(timesteps))

    def measure(row):
        name, blocks, timesteps, compile_, target = row
        cfg = BenchmarkConfig(
            arch='adm-256-uncond', blocks=blocks, timesteps=timesteps,
            compile=compile_, build_on_device=build_on_device, profile_iters=2,
            checkpoint=checkpoint,
            command=f'tools/device/speed.py row {name}', **setting)
        row_start = time.perf_counter()
        result = run_benchmark(cfg, log=rec.log)
        seconds = time.perf_counter() - row_start
        last[compile_] = (seconds, len(timesteps))
        profile = result['ours'].pop('profile', None)
        record = dict(name=name, target=target, seconds=seconds, result=result,
                      checks=verdict(result, target))
        return record, {f'{name}_profile.txt': profile} if profile else None

    device_run.run_rows(rec, rows, measure, start, deadline_s, limit_s, guess)


def parse_args(argv=None):
    return device_run.parser(__doc__, ROWS, 'work_dirs/device_speed').parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setting = SETTINGS['smoke' if args.smoke else 'device']
    rows = device_run.select_rows(ROWS, args.rows)

    def body(rec, info):
        weights = tempfile.mkdtemp(prefix='speed_weights_')
        try:
            checkpoint = save_weights(setting, osp.join(weights, 'adm256_redrawn_seed0.pt'))
            rec.log(f'weights: re-drawn (seed 0) and saved at '
                    f'{time.perf_counter() - START:.0f} s')
            run_rows(rec, setting, args.deadline_s, START, rows, checkpoint, args.limit_s,
                     info['build_on_device'])
        finally:
            shutil.rmtree(weights)

    return device_run.main(Recorder, args, lambda rec: preflight(rec, setting), body, START,
                           'speed_logs_')


if __name__ == '__main__':
    sys.exit(main())
