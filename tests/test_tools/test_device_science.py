"""tools/device/science.sh (issue 23's device run) in its CPU smoke mode: the same steps, the
files it writes; the limit, the iterations from the rehearsal, the heads' cells."""
import json
import os
import os.path as osp
import subprocess
import sys
import tarfile
import time

import pytest

from conftest import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools'))
sys.path.insert(0, osp.join(ROOT, 'tools', 'device'))
import _science_steps as steps  # noqa: E402  tools/device/_science_steps.py
import pipeline  # noqa: E402  tools/pipeline.py

DEBIAN = '/usr/share/datasets/fashion-mnist'


@pytest.mark.slow   # the whole science run in its smoke mode: over a minute of CPU
@pytest.mark.skipif(not osp.isdir(DEBIAN), reason='needs Debian dataset-fashion-mnist')
def test_smoke_run_writes_the_files_that_come_back(tmp_path):
    out = tmp_path / 'out'
    env = dict(os.environ, OUT=str(out), SMOKE='1', WHEELS='', PYTHON=sys.executable,
               DATA_SOURCE=DEBIAN, OMP_NUM_THREADS='1')
    # two heads: the cached path with several blocks, and DifFeed online (the CPU time)
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', 'device', 'science.sh'),
                           '--work-dir', str(tmp_path / 'work'), '--',
                           '--heads', 'difformer', 'diffeed'], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert sorted(os.listdir(out)) == [  # the device sends 8 files back at most
        'heatmap.png', 'logs.tar.gz', 'preflight.json', 'report.json', 'report.md',
        'samples.png', 'steps.json', 'unet_ema.pth']

    preflight = json.loads((out / 'preflight.json').read_text())
    assert preflight['device'] == 'cpu' and preflight['dtype'] == 'fp32'
    assert preflight['mmcv'] and preflight['mmpretrain'] and len(preflight['data']) == 4
    rehearsal = preflight['rehearsal']
    assert rehearsal['iters'] == 2 and rehearsal['step_s'] > 0 and rehearsal['loss'] > 0
    assert preflight['pretrain_iters'] == 4   # the smoke keeps its toy iterations

    ran = json.loads((out / 'steps.json').read_text())
    assert all(s['status'] == 'ok' for s in ran), ran
    names = [s['name'] for s in ran]
    assert names[:9] == ['preflight', 'rehearsal', 'classifier', 'pixel probe', 'random probe',
                         'pretraining', 'export EMA weights', 'pretrained probe', 'samples']
    assert names[9:14] == ['report', 'head difformer', 'report', 'head diffeed', 'report']
    assert names[14:] in ([], ['curve', 'report'])   # the curve: a margin under 3 points

    report = json.loads((out / 'report.json').read_text())
    assert set(report['probes']) == {'pretrained', 'random', 'pixels'}
    assert report['timing']['pretraining']['settings']['iters'] == 4
    best = report['heatmap_best']
    assert report['heads']['diffeed']['blocks'] == [best[0]]
    assert report['heads']['diffeed']['timesteps'] == [best[1]]
    assert sorted(report['heads']['difformer']['blocks']) == [4, 8]   # the grid has two
    assert all(0 <= h[k] <= 100 for h in report['heads'].values() for k in ('heldout', 'test'))
    md = (out / 'report.md').read_text()
    assert '## Heads on the pretrained U-Net' in md and '| diffeed | ' in md
    assert '`bash tools/device/science.sh (SMOKE=1)`' in md

    import torch
    state = torch.load(out / 'unet_ema.pth', weights_only=True)
    assert state and all(k.startswith('unet.') for k in state)

    with tarfile.open(out / 'logs.tar.gz') as tar:
        names = set(tar.getnames())
        console = tar.extractfile('logs/console.txt').read().decode()
    assert {'logs/log.txt', 'logs/console.txt', 'logs/predictions.npz'} <= names
    assert any(n.startswith('logs/extra/pretrain/') and n.endswith('.log') for n in names)
    assert any(n.startswith('logs/extra/heads/diffeed/') for n in names)
    assert not any(n.endswith(('.pth', '.npy')) for n in names)   # no weights, no caches
    assert 'done in' in console and '== head diffeed' in console


def test_no_step_starts_that_would_end_after_the_limit(tmp_path):
    start = time.perf_counter() - 100
    rec = steps.StepRecorder(str(tmp_path / 'out'), str(tmp_path / 'logs'), start, limit_s=120)
    assert rec.step('fits', lambda: 'a', estimate=10) == 'a'
    assert rec.step('too long', lambda: 'b', estimate=30) is None
    assert rec.step('after it', lambda: 'c', needs=('too long', )) is None

    def broken():
        raise RuntimeError('no GPU here')

    assert rec.step('broken', broken) is None
    recorded = json.loads((tmp_path / 'out' / 'steps.json').read_text())
    assert [(s['name'], s['status']) for s in recorded] == [
        ('fits', 'ok'), ('too long', 'not started'), ('after it', 'not started'),
        ('broken', 'failed')]
    assert recorded[1]['reason'].startswith('would end at about 13') and \
        recorded[1]['reason'].endswith('> limit 120 s')
    assert recorded[2]['reason'] == 'needs too long'
    assert recorded[3]['error'] == 'RuntimeError: no GPU here'
    assert rec.seconds('fits', 99) < 1 and rec.seconds('too long', 99) == 99


def test_iterations_from_the_rehearsal():
    # 20 ms per iteration, 10 s of start-up: 140 s hold 7,000 of them
    assert steps.choose_iters(0.02, 10, 150, cap=20000) == 7000
    assert steps.choose_iters(0.02, 10, 150, cap=5000) == 5000
    assert steps.choose_iters(0.0213, 10, 150, cap=20000) == 6500   # rounded down
    assert steps.choose_iters(5.0, 10, 150, cap=20000) == 100       # at least one unit
    with pytest.raises(ValueError, match='step_s=0.0: the rehearsal measured no iteration'):
        steps.choose_iters(0.0, 10, 150, cap=20000)


def test_head_cells_and_configs(tmp_path):
    heatmap = {(4, 10): 80.0, (4, 50): 81.0, (8, 10): 84.0, (8, 50): 86.0, (8, 100): 85.0,
               (10, 50): 83.0, (12, 50): 82.5, (2, 50): 70.0}
    assert pipeline.head_cells(heatmap) == ((8, 50), ((8, 10, 12), (50, 100)))
    args = pipeline.parse_args(['--preset', 'gpu', '--device', 'cpu', '--dtype', 'fp32',
                                '--work-dir', str(tmp_path)])
    cfg = pipeline.probe_config(args)
    attention = pipeline.head_config(args, cfg, 'attention', 'ema.pth', heatmap)
    backbone = attention.model.backbone
    assert (backbone.blocks, backbone.timesteps, backbone.checkpoint) == ((8, ), (50, ), 'ema.pth')
    assert 'pool_size' not in attention.model.head   # the cache keeps maps under 16 x 16
    assert attention.runner_type == 'FeatureCacheRunner'
    assert attention.train_dataloader.dataset.indices == args.probe_train
    assert attention.val_dataloader.dataset.indices == pipeline.heldout_indices(args)
    assert attention.train_cfg.max_epochs == args.head_epochs == 8
    assert attention.param_scheduler.step_size == 2   # the paper's StepLR(7) of 28 epochs
    difformer = pipeline.head_config(args, cfg, 'difformer', 'ema.pth', heatmap)
    assert difformer.model.head.blocks == (8, 10, 12) == difformer.model.backbone.blocks
    assert difformer.model.head.timesteps == (50, 100) == difformer.model.backbone.timesteps
    diffeed = pipeline.head_config(args, cfg, 'diffeed', 'ema.pth', {(4, 10): 90.0})
    # decoder blocks 8, 10, 12 feed encoder blocks 6, 4, 2: block 6 cannot reach block 4
    assert diffeed.model.backbone.feedback_blocks == [10, 12]
    assert diffeed.model.backbone.backbone.blocks == (4, )
    assert 'runner_type' not in diffeed and 'feature_cache' not in diffeed
    with pytest.raises(ValueError, match='DifFeed: no feedback block of .* reaches read-out '
                       'block 1'):
        pipeline.head_config(args, cfg, 'diffeed', 'ema.pth', {(1, 10): 90.0})
