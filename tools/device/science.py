"""Device run 3 (issue 23): the README's pretraining experiment (tools/pipeline.py) at GPU scale.

Run by ``tools/device/science.sh`` (see ``tools/device/README.md``, "Run 3")::

    python tools/device/science.py --out $OUT --data-source data/fashion_mnist_gz
    python tools/device/science.py --smoke --out /tmp/science   # CPU, toy sizes, same path

The steps are tools/pipeline.py's functions with its ``gpu`` preset (``--smoke``: toy sizes
on the CPU), in this order; each one's files are written to ``--out`` as it finishes and no
step starts that would likely end after ``--limit-s`` seconds (its guess is written in the
log and ``steps.json``):

1. preflight: versions, the GPU, Fashion-MNIST unpacked from ``--data-source``, then a timed
   rehearsal of the pretraining config (``--rehearsal-iters`` iterations, the run's batch,
   bf16, dataloader workers) whose median step time and start-up set the iterations that
   fit ``--pretrain-s`` (:func:`~_science_steps.choose_iters`);
2. lane A, a second process: the pretraining (fixed iterations, EMA), then the DDIM samples;
3. lane B, here, meanwhile: the sample classifier, the pixel probe and the random U-Net's
   probe over the block x timestep grid;
4. the pretrained U-Net's probe (the heatmap), the report (tools/pipeline.py's
   ``write_report``) with the sample grid;
5. the heads on the best held-out cell, each rewriting the report: linear, attention,
   DifFormer (from a feature cache), DifFeed online;
6. the held-out curve along the pretraining if the margin is under 3 points and time is left.

Files in ``--out`` (8 at most come back from the device): ``preflight.json``, ``steps.json``,
``report.md``, ``report.json``, ``heatmap.png``, ``samples.png``, ``unet_ema.pth`` (the EMA
U-Net's ``state_dict``, ``unet.`` keys, if under 16 MB) and ``logs.tar.gz`` (``log.txt``,
``console.txt``, the runs' mmengine logs, ``predictions.npz``).
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

START = time.perf_counter()  # before torch's import: science.sh's limit counts from here

import numpy as np  # noqa: E402
import torch  # noqa: E402

TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, TOOLS)  # pipeline, cli_common
sys.path.insert(0, osp.join(TOOLS, 'device'))  # device_run, _science_steps

import device_run  # noqa: E402  tools/device/device_run.py
import pipeline  # noqa: E402
from _science_steps import StepRecorder, choose_iters  # noqa: E402

# The smoke run's sizes (CPU, about a minute here): the pipeline test's toy sizes
SMOKE_ARGS = ['--device', 'cpu', '--dtype', 'fp32', '--workers', '0', '--pretrain-iters', '4',
              '--pretrain-batch', '4', '--probe-train', '32', '--heldout', '16', '--test', '16',
              '--blocks', '4', '8', '--timesteps', '10', '100', '--weight-decays', '0', '0.01',
              '--probe-epochs', '3', '--seeds', '2', '--samples', '4', '--sample-steps', '2',
              '--classifier-train', '100', '--classifier-epochs', '1', '--extract-batch', '16',
              '--head-epochs', '1', '--head-batch', '8', '--curve-points', '2']
MAX_FILE = 16 * 2**20  # the device sends files up to 16 MiB back
# first guesses of the heads' seconds on the device (a finished head rescales the others)
HEAD_GUESS_S = dict(linear=12, attention=15, difformer=20, diffeed=30)


def parse_args(argv=None):
    parser = device_run.base_parser(__doc__, 'work_dirs/device_science')
    parser.add_argument('--work-dir', help="the pipeline's work dir (default a new "
                        'temporary folder)')
    parser.add_argument('--data-source', default='data/fashion_mnist_gz',
                        help="folder of Fashion-MNIST's four .gz files (Debian's package)")
    parser.add_argument('--pretrain-s', type=float, default=150.0,
                        help='seconds the pretraining should take, start-up included '
                        '(default 150; smoke: the toy iterations)')
    parser.add_argument('--rehearsal-iters', type=int, default=60,
                        help='iterations of the timed pretraining rehearsal (default 60)')
    parser.add_argument('pipeline_args', nargs='*',
                        help='more tools/pipeline.py options (after --), e.g. -- --seeds 5')
    return parser.parse_args(argv)


def pipeline_args(args, work_dir, data):
    """tools/pipeline.py's arguments of this run (gpu preset; smoke: toy sizes on the CPU)."""
    argv = ['--preset', 'gpu', '--work-dir', work_dir, '--data', data, '--jobs', '1']
    return pipeline.parse_args(argv + (SMOKE_ARGS if args.smoke else []) + args.pipeline_args)


# ---------------------------------------------------------------------------- steps
def preflight(pargs, source):
    """Versions, the device, and Fashion-MNIST unpacked into ``pargs.data``."""
    import mmcv
    import mmengine
    import mmpretrain

    import mmdiffssl  # noqa: F401  (registers mmdiffssl's modules)
    from mmdiffssl.datasets import prepare_fashion_mnist
    info = dict(python=sys.version.split()[0], torch=torch.__version__, cuda=torch.version.cuda,
                mmengine=mmengine.__version__, mmcv=mmcv.__version__,
                mmpretrain=mmpretrain.__version__, device=pargs.device, dtype=pargs.dtype,
                gpu=torch.cuda.get_device_name() if pargs.device == 'cuda' else None,
                cpus=os.cpu_count())
    prepare_fashion_mnist(pargs.data, source=source)
    info['data'] = sorted(os.listdir(pargs.data))
    return info


def rehearse(pargs, iters, work_dir):
    """The pretraining config for ``iters`` iterations (no checkpoint) in ``work_dir``:
    ``dict(step_s=median iteration time of the second half, startup_s=the rest of the wall
    time, loss=the last loss)``; raises on a non-finite loss."""
    from cli_common import build_runner
    rehearsal = argparse.Namespace(**dict(vars(pargs), pretrain_iters=iters))
    cfg = pipeline.pretrain_config(rehearsal)
    cfg.work_dir = work_dir
    cfg.default_hooks.checkpoint.interval = iters + 1
    begin = time.perf_counter()
    runner = build_runner(cfg)
    runner.train()
    wall = time.perf_counter() - begin
    times = runner.message_hub.get_scalar('train/time').data[0]
    loss = float(runner.message_hub.get_scalar('train/loss').current())
    if not np.isfinite(loss):
        raise RuntimeError(f'the pretraining rehearsal ended with loss {loss}')
    step_s = float(np.median(times[len(times) // 2:]))
    return dict(iters=iters, step_s=step_s, startup_s=max(0.0, wall - step_s * len(times)),
                wall_s=wall, loss=loss)


def export_ema(rec, checkpoint):
    """The EMA U-Net's ``state_dict`` (``unet.`` keys) into ``out/unet_ema.pth`` when under
    the size the device sends back."""
    from mmdiffssl.utils.checkpoint import load_state_dict_file
    state = load_state_dict_file(checkpoint, key='state_dict')
    path = osp.join(rec.out, 'unet_ema.pth')
    torch.save({k: v for k, v in state.items() if k.startswith('unet.')}, path)
    if osp.getsize(path) > MAX_FILE:
        os.remove(path)
        return dict(exported=False, reason=f'over {MAX_FILE} bytes')
    return dict(exported=True, bytes=osp.getsize(path))


class Report:
    """What the report is made of, filled step by step; :meth:`write` calls
    tools/pipeline.py's ``write_report`` and copies its files into ``out``."""

    def __init__(self, rec, pargs, machine):
        self.rec, self.pargs, self.machine = rec, pargs, machine
        self.probes, self.timing, self.heads = {}, {}, {}
        self.scorer = self.run = self.samples = self.points = None

    def write(self):
        pargs, work = self.pargs, self.pargs.work_dir
        model, top1, test_feats, real = self.scorer
        images = np.load(self.samples)
        pipeline.save_grid(images, osp.join(work, 'samples.png'))
        from mmdiffssl.analysis.sample_quality import score_images
        samples = score_images(model, torch.from_numpy(images).float() / 127.5 - 1, test_feats)
        heatmap, summary = pipeline.summaries(self.probes)
        headline = pipeline.write_report(
            pargs, work, summary, self.probes, heatmap, samples, real, top1,
            dict(self.timing, pretraining=self.run), self.points, self.machine, self.heads)
        for name in ('report.md', 'report.json', 'heatmap.png', 'samples.png'):
            self.rec.copy(osp.join(work, name))
        self.rec.copy(osp.join(work, 'predictions.npz'), folder=self.rec.logs)
        self.rec.log(headline)
        return dict(headline=headline, margin=pipeline.margin_of(summary),
                    best=list(max(heatmap, key=heatmap.get)))


def timed(timing, name, fn, *args):
    """``fn(*args)``, its wall and CPU seconds (``pipeline.timed``) stored in
    ``timing[name]``."""
    result, timing[name] = pipeline.timed(fn, *args)
    return result


def main(argv=None):
    args = parse_args(argv)
    logs = args.logs or tempfile.mkdtemp(prefix='science_logs_')
    work = args.work_dir or tempfile.mkdtemp(prefix='science_work_')
    rec = StepRecorder(args.out, logs, START, args.limit_s)
    pargs = pipeline_args(args, work, osp.join(work, 'fashion_mnist'))
    machine = pipeline.machine_record(['--preset', 'gpu'] + (SMOKE_ARGS if args.smoke else [])
                                      + args.pipeline_args)
    machine['command'] = 'bash tools/device/science.sh' + (' (SMOKE=1)' if args.smoke else '')

    info = rec.step('preflight', preflight, pargs, args.data_source)
    if info is None:
        rec.tar()
        return 1
    rec.write_json('preflight.json', info)   # again below, with the rehearsal
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    rehearsal = rec.step('rehearsal', rehearse, pargs, 2 if args.smoke else args.rehearsal_iters,
                         osp.join(work, 'rehearsal'), estimate=30.0)
    if rehearsal is not None and not args.smoke:
        pargs.pretrain_iters = choose_iters(rehearsal['step_s'], rehearsal['startup_s'],
                                            args.pretrain_s, pargs.pretrain_iters)
    info.update(rehearsal=rehearsal, pretrain_iters=pargs.pretrain_iters,
                pretrain_batch=pargs.pretrain_batch)
    rec.write_json('preflight.json', info)
    rec.log('preflight', json.dumps(info))
    if rehearsal is None:
        rec.tar()
        return 1

    cfg = pipeline.probe_config(pargs)
    report = Report(rec, pargs, machine)
    arch = dict(cfg.model.backbone)
    with ProcessPoolExecutor(1, mp_context=get_context('spawn')) as lane_a:
        pretraining = lane_a.submit(pipeline.pretrain, pargs)
        rec.log(f'lane A: pretraining {pargs.pretrain_iters} iterations of '
                f'{pargs.pretrain_batch} (second process)')
        report.scorer = rec.step('classifier', timed, report.timing, 'classifier',
                                 pipeline.sample_scorer, pargs, cfg)
        rec.step('pixel probe', lambda: report.probes.update(pixels=timed(
            report.timing, 'pixel probe', pipeline.probe_pixels, pargs, cfg, rec.log)))
        rec.step('random probe', lambda: report.probes.update(random=timed(
            report.timing, 'random probe', pipeline.probe_unet, pargs, cfg,
            dict(arch, random_init='redraw'), rec.log)))
        report.run = rec.step('pretraining', pretraining.result)
        if report.run is None:
            rec.tar()
            return 1
        rec.step('export EMA weights', export_ema, rec, report.run['checkpoint'])
        sampling = lane_a.submit(pipeline.sample, pargs, report.run['checkpoint'])
        rec.step('pretrained probe', lambda: report.probes.update(pretrained=timed(
            report.timing, 'pretrained probe', pipeline.probe_unet, pargs, cfg,
            dict(arch, checkpoint=report.run['checkpoint'], checkpoint_prefix='unet.'),
            rec.log)), estimate=rec.seconds('random probe', 30.0),
            needs=('random probe', ))
        report.samples = rec.step('samples', lambda: sampling.result()[0])
    needs = ('classifier', 'pixel probe', 'pretrained probe', 'samples')
    written = rec.step('report', report.write, estimate=5.0, needs=needs)
    if rec.status('pretrained probe') == 'ok':
        heatmap, _ = pipeline.summaries(report.probes)
        scale = 1.0  # measured / guessed seconds of the last finished head
        for name in pargs.heads:
            head = rec.step(f'head {name}', pipeline.train_head, pargs, cfg, name,
                            report.run['checkpoint'], heatmap,
                            estimate=HEAD_GUESS_S[name] * scale)
            if head is not None:
                report.heads[name] = head
                report.timing[f'head {name}'] = dict(wall_s=head['wall_s'])
                scale = head['wall_s'] / HEAD_GUESS_S[name]
                rec.step('report', report.write, estimate=5.0, needs=needs)
    if written and written['margin'] < pipeline.TARGET:
        best = report.probes['pretrained']
        # each earlier checkpoint: one cell's fill and fits, guessed at 3 cells of the grid
        per_cell = rec.seconds('pretrained probe', 30.0) / len(heatmap)
        report.points = rec.step(
            'curve', pipeline.curve, pargs, cfg, report.run, best['cell'],
            best['weight_decay'], heatmap[best['cell']],
            estimate=3 * per_cell * (pargs.curve_points - 1))
        if report.points:
            rec.step('report', report.write, estimate=5.0)
    rec.log(f'done in {rec.elapsed():.0f} s')
    rec.tar(osp.join(work, 'pretrain'), osp.join(work, 'heads'))
    return 0 if rec.status('report') == 'ok' else 1


if __name__ == '__main__':
    sys.exit(main())
