"""Device run 2 (issue 22): seconds per training iteration and peak memory of Mask R-CNN
(1024 x 1024) and UPerNet (512 x 512) on adm-256-uncond, batch 2.

Run by ``tools/device/dense.sh`` (see ``tools/device/README.md``)::

    python tools/device/dense.py --out $OUT [--deadline-s 200]
    python tools/device/dense.py --smoke --out /tmp/dense   # CPU, narrowed U-Net, 64 px

A preflight (versions; imports of mmdet, mmseg and mmpretrain's models; mmcv's NMS and
RoIAlign on the device), then the rows of :data:`ROWS` in priority order, each measured
by ``benchmarks.dense.measure_train_step`` (the config as is, random re-drawn weights,
one synthetic batch, :data:`SETTINGS`' warm-up and timed iterations) and written to
``--out`` as soon as it finishes; no row starts after ``--deadline-s`` seconds. A row that
runs out of memory is followed by its fallback (:data:`FALLBACKS`, the order of
configs/mask_rcnn/README.md). The Mask R-CNN rows need mmcv's ops on the device: where the
preflight finds none, they are recorded as not started and the UPerNet rows still run.
Files in ``--out`` (at most 8 come back from the device):

- ``preflight.json``: versions, device, GPU memory, which imports and ops work;
- ``results.json``: every row's record (the measurement, whether it fits an 80 GB GPU),
  or why it failed or was not started (rewritten after each row);
- ``summary.md``: one table line per row;
- ``logs.tar.gz``: ``log.txt``, ``console.txt``, each row's JSON.
"""
import importlib
import importlib.metadata
import json
import os.path as osp
import sys
import time
from typing import NamedTuple

START = time.perf_counter()  # before torch's import: dense.sh's limit counts from here

import torch  # noqa: E402

TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))
ROOT = osp.dirname(TOOLS)
sys.path.insert(0, TOOLS)  # benchmarks

import device_run  # noqa: E402  tools/device/device_run.py


class Row(NamedTuple):
    """One measurement: ``config`` (repo-relative) with ``backbone`` overrides, ``batch``
    images per ``train_step`` and ``accumulate`` steps per iteration; ``fallbacks``: the
    names in :data:`FALLBACKS` still to try, in order, if it runs out of memory."""
    name: str
    config: str
    fallbacks: tuple = ()
    backbone: dict = {}
    batch: int = 2
    accumulate: int = 1


# configs/mask_rcnn/README.md, "What is left for a GPU": after the bf16 config, train only
# the decoder (blocks 19 and later), then batch 1 with 2 accumulated steps (the same batch
# 2 per GPU); each applies on top of the ones before
FALLBACKS = dict(from19=dict(backbone=dict(trainable_from=19)),
                 b1x2=dict(batch=1, accumulate=2))
FINE_TUNED = ('from19', 'b1x2')
FROZEN = ('b1x2', )

_MRCNN = 'configs/mask_rcnn/mask-rcnn_adm-256-uncond-'
_UPERNET = 'configs/upernet/upernet_adm-256-uncond-pyramid-'
# priority order: the five, then the other settings of test_dense_gpu.py
ROWS = (
    Row('mrcnn_pyramid_frozen_bf16', _MRCNN + 'pyramid-frozen_fpn_8xb2-amp-bf16-1x_coco.py',
        FROZEN),
    Row('mrcnn_pyramid_ft_cp_bf16', _MRCNN + 'pyramid-ft-cp_fpn_8xb2-amp-bf16-1x_coco.py',
        FINE_TUNED),
    Row('mrcnn_b24_frozen', _MRCNN + 'b24-frozen_simple-fpn_8xb2-1x_coco.py', FROZEN),
    Row('upernet_frozen', _UPERNET + 'frozen_8xb2-80k_ade20k-512x512.py', FROZEN),
    Row('upernet_ft_cp_bf16', _UPERNET + 'ft-cp_8xb2-amp-bf16-80k_ade20k-512x512.py',
        FINE_TUNED),
    Row('mrcnn_pyramid_ft_cp', _MRCNN + 'pyramid-ft-cp_fpn_8xb2-1x_coco.py', FINE_TUNED),
    Row('upernet_ft_cp', _UPERNET + 'ft-cp_8xb2-80k_ade20k-512x512.py', FINE_TUNED),
    Row('mrcnn_b24_ft_cp', _MRCNN + 'b24-ft-cp_simple-fpn_8xb2-1x_coco.py', FINE_TUNED),
    Row('mrcnn_pyramid_frozen', _MRCNN + 'pyramid-frozen_fpn_8xb2-1x_coco.py', FROZEN),
    Row('upernet_frozen_bf16', _UPERNET + 'frozen_8xb2-amp-bf16-80k_ade20k-512x512.py', FROZEN),
)
# the device run and the CPU smoke run of the same path; the smoke narrows adm-256-uncond
# to 32 channels (the same blocks, strides and attention levels), runs AMP configs in fp32
# (mmengine's AmpOptimWrapper asserts a GPU) and samples fewer RoIs (the mask head on 128
# positive RoIs dominates a CPU step)
SETTINGS = dict(
    device=dict(device='cuda', size=None, arch=None, warmup=2, steps=5, fp32=False,
                threads=None, cfg_options={}),
    smoke=dict(device='cpu', size=64, warmup=0, steps=1, fp32=True, threads=1,
               arch=dict(preset='adm-256-uncond', num_channels=32, num_head_channels=8),
               cfg_options=dict(mask_rcnn={
                   'model.train_cfg.rpn_proposal.nms_pre': 200,
                   'model.train_cfg.rpn_proposal.max_per_img': 100,
                   'model.train_cfg.rcnn.sampler.num': 32})),
)
# "fits an 80 GB GPU": peak reserved memory at most 78 GiB (an 80 GB H100 shows torch about
# 79.1 GiB; about 1 GiB is left for the CUDA context and library workspaces outside the
# caching allocator)
FIT_80GB_GIB = 78.0
PACKAGES = ('mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'mmpretrain', 'transformers',
            'tokenizers', 'huggingface_hub', 'pycocotools')
SCOPES = dict(mmdet='mmdet.models', mmseg='mmseg.models', mmpretrain='mmpretrain.models')


def _error(err):
    return f'{type(err).__name__}: {err}'[:300]


def check_ops(device):
    """mmcv's NMS and RoIAlign (what Mask R-CNN calls) on ``device``; raises if wrong."""
    from mmcv.ops import nms, roi_align
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.]],
                         device=device)
    scores = torch.tensor([0.9, 0.8, 0.7], device=device)
    _, keep = nms(boxes, scores, 0.5)
    if keep.device.type != torch.device(device).type or keep.tolist() != [0, 2]:
        raise RuntimeError(f'nms kept {keep.tolist()} on {keep.device}, expected [0, 2]')
    feats = torch.arange(2 * 8 * 8, dtype=torch.float32, device=device).view(1, 2, 8, 8)
    rois = torch.tensor([[0., 0., 0., 4., 4.]], device=device)
    out = roi_align(feats, rois, (2, 2), 1.0, 0, 'avg', True)
    if out.shape != (1, 2, 2, 2) or not torch.isfinite(out).all():
        raise RuntimeError(f'roi_align gave {tuple(out.shape)}, expected (1, 2, 2, 2)')


def preflight(rec, setting):
    """Versions, the device, and what works there: ``scopes`` (each codebase's models
    import), ``mmcv_ops`` ('ok' or the error of :func:`check_ops`) and ``configs`` (a
    config of each codebase loads, its ``mmdet::``/``mmseg::`` bases resolved: 'ok' or the
    error; a single config's own fault shows in its row)."""
    from mmengine.config import Config
    start = time.perf_counter()
    info = dict(python=sys.version.split()[0], torch=torch.__version__,
                cuda=torch.version.cuda, device=setting['device'])
    for name in PACKAGES:
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None
    if setting['device'] == 'cuda':
        props = torch.cuda.get_device_properties(0)
        info.update(device_name=props.name, total_gib=props.total_memory / 2**30)
    import mmdiffssl
    info['mmdiffssl'] = osp.dirname(mmdiffssl.__file__)
    info['scopes'] = {}
    for scope, module in SCOPES.items():
        try:
            importlib.import_module(module)
            info['scopes'][scope] = 'ok'
        except Exception as err:  # recorded; the rows that need it are not started
            info['scopes'][scope] = _error(err)
    try:
        check_ops(setting['device'])
        info['mmcv_ops'] = 'ok'
    except Exception as err:
        info['mmcv_ops'] = _error(err)
    info['configs'] = {}
    for scope in ('mmdet', 'mmseg'):   # one config each: the environment, not the config
        config = next(row.config for row in ROWS if _scope(row) == scope)
        try:   # mmengine resolves the mmdet::/mmseg:: bases through pkg_resources
            Config.fromfile(osp.join(ROOT, config))
            info['configs'][scope] = 'ok'
        except Exception as err:
            info['configs'][scope] = _error(err)
    info['seconds'] = time.perf_counter() - start
    rec.write_json('preflight.json', info)
    rec.log('preflight', json.dumps(info))
    return info


def _scope(row):
    return 'mmdet' if '/mask_rcnn/' in row.config else 'mmseg'


def missing(row, info):
    """Why the preflight says ``row`` cannot run (None: it can)."""
    scope = _scope(row)
    if info['scopes'][scope] != 'ok':
        return f'{scope} does not import: {info["scopes"][scope]}'
    if info['configs'][scope] != 'ok':
        return f'{scope} configs do not load: {info["configs"][scope]}'
    if scope == 'mmdet' and info['mmcv_ops'] != 'ok':
        return f"needs mmcv's ops on the device: {info['mmcv_ops']}"
    return None


def is_oom(err):
    return isinstance(err, torch.OutOfMemoryError) or 'out of memory' in str(err)


def follow_ups(row, err):
    """The row to run after ``row`` failed with ``err``: its next fallback if ``err`` is
    an out-of-memory error (:data:`FALLBACKS`, on top of those ``row`` already has)."""
    if not row.fallbacks or not is_oom(err):
        return []
    name, rest = row.fallbacks[0], row.fallbacks[1:]
    change = FALLBACKS[name]
    return [row._replace(name=f'{row.name}-{name}', fallbacks=rest,
                         backbone={**row.backbone, **change.get('backbone', {})},
                         batch=change.get('batch', row.batch),
                         accumulate=change.get('accumulate', row.accumulate))]


def fits(result):
    """Whether the measured setting fits an 80 GB GPU (None without GPU numbers)."""
    if result['reserved_gib'] is None:
        return None
    return result['reserved_gib'] <= FIT_80GB_GIB


def _gib(value):
    return 'n/a' if value is None else f'{value:.2f}'


def summary(rows):
    """The rows as a markdown table."""
    lines = ['Training step on one synthetic batch, adm-256-uncond re-drawn, configs as '
             'they are; s/iter: median of the timed iterations; peak: '
             '`max_memory_allocated` / `max_memory_reserved`; fits 80 GB: reserved '
             f'<= {FIT_80GB_GIB:g} GiB.',
             '',
             '| row | config | batch x steps | s/iter | peak alloc GiB | peak reserved GiB | '
             'fits 80 GB | trainable M (U-Net) | 1st iter s | build s |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for row in rows:
        if 'error' in row:
            oom = ' (out of memory)' if 'out of memory' in row['error'] else ''
            lines.append(f"| {row['name']} | | | {row['error']}{oom} | | | | | | |")
            continue
        res = row['result']
        fit = {None: 'n/a', True: 'yes', False: 'no'}[row['fits_80gb']]
        lines.append(
            f"| {row['name']} | `{res['config']}`{' (fp32)' if res['fp32'] else ''} | "
            f"{res['batch']} x {res['accumulate']} | {res['s_per_iter']:.3f} | "
            f"{_gib(res['peak_gib'])} | {_gib(res['reserved_gib'])} | {fit} | "
            f"{res['trainable_params'] / 1e6:.1f} ({res['backbone_trainable_params'] / 1e6:.1f})"
            f" | {res['first_iter_s']:.1f} | {res['build_s']:.1f} |")
    return '\n'.join(lines)


class Recorder(device_run.Recorder):
    """The shared files (:class:`device_run.Recorder`), ``summary.md`` as :func:`summary`."""
    summary = staticmethod(summary)


def run_rows(rec, setting, deadline_s, start, rows=ROWS, limit_s=None, info=None):
    """Each row in order (:func:`device_run.run_rows`), after recording those the preflight
    ``info`` rules out (:func:`missing`) as not started; a row's guess is the longest
    finished row of the same model (Mask R-CNN or UPerNet)."""
    from benchmarks.dense import measure_train_step
    longest = {}  # model -> seconds of its longest finished row
    runnable = []
    for row in rows:
        reason = missing(row, info) if info else None
        if reason:
            rec.log(f'not starting {row.name}: {reason}')
            rec.add_row(dict(name=row.name, config=row.config, error=f'not started ({reason})'))
        else:
            runnable.append(row)

    def model(row):
        return 'mask_rcnn' if '/mask_rcnn/' in row.config else 'upernet'

    def measure(row):
        row_start = time.perf_counter()
        result = measure_train_step(
            osp.join(ROOT, row.config), setting['device'], batch=row.batch,
            size=setting['size'], steps=setting['steps'], warmup=setting['warmup'],
            arch=setting['arch'], backbone=dict(row.backbone) or None,
            accumulate=row.accumulate, fp32=setting['fp32'],
            cfg_options=setting['cfg_options'].get(model(row)))
        seconds = time.perf_counter() - row_start
        longest[model(row)] = max(seconds, longest.get(model(row), 0))
        return dict(name=row.name, config=row.config, seconds=seconds, result=result,
                    fits_80gb=fits(result))

    device_run.run_rows(rec, runnable, measure, start, deadline_s, limit_s,
                        guess=lambda row: longest.get(model(row)), follow_ups=follow_ups)


def main(argv=None):
    args = device_run.parser(__doc__, ROWS, 'work_dirs/device_dense').parse_args(argv)
    setting = SETTINGS['smoke' if args.smoke else 'device']
    rows = device_run.select_rows(ROWS, args.rows)
    if setting['threads']:
        torch.set_num_threads(setting['threads'])

    def body(rec, info):
        run_rows(rec, setting, args.deadline_s, START, rows, args.limit_s, info)

    return device_run.main(Recorder, args, lambda rec: preflight(rec, setting), body, START,
                           'dense_logs_')


if __name__ == '__main__':
    sys.exit(main())
