"""tools/pipeline.py end to end at toy sizes: the report's structure and every number
recomputed from what the run saved (mmpretrain's Accuracy on the saved test predictions, the
cached classifier on the saved samples); slow: a second run in two processes (``--jobs 2``)
reuses every cache and reproduces the numbers the first computed in one."""
import glob
import json
import os.path as osp
import re

import numpy as np
import pytest
import torch

from conftest import run_tool

TOY = ['--preset', 'demo', '--pretrain-iters', '2', '--pretrain-batch', '4',
       '--probe-train', '100', '--heldout', '60', '--test', '50', '--blocks', '4', '8',
       '--timesteps', '10', '100', '--weight-decays', '0', '0.01', '--probe-epochs', '5',
       '--seeds', '2', '--samples', '6', '--sample-steps', '2', '--classifier-train', '200',
       '--classifier-epochs', '1']


def pipeline_args(out, data_root, jobs):
    return ['tools/pipeline.py', *TOY, '--work-dir', out, '--data', data_root, '--jobs', jobs]


@pytest.fixture(scope='module')
def pipeline_run(tmp_path_factory, fashion_mnist_root):
    out = str(tmp_path_factory.mktemp('pipeline'))
    log = run_tool(pipeline_args(out, fashion_mnist_root, '1'))
    with open(osp.join(out, 'report.json')) as f:
        report = json.load(f)
    return out, log, report, dict(np.load(osp.join(out, 'predictions.npz')))


def test_report_structure(pipeline_run):
    out, first, report, _ = pipeline_run
    with open(osp.join(out, 'report.md')) as f:
        md = f.read()
    headline = re.search(r'^pretrained .* \(margin [+-][0-9.]+ points\)$', first, re.M)[0]
    assert headline in md and f'report: {osp.join(out, "report.md")}' in first
    assert re.search(r'^Run: 20\d\d-\d\d-\d\d .* cores, load average .*`python '
                     r'tools/pipeline.py --preset demo .*--jobs 1`$', md, re.M)
    for image in ('heatmap.png', 'samples.png'):
        assert f']({image})' in md and osp.getsize(osp.join(out, image)) > 0
    assert set(report['probes']) == {'pretrained', 'random', 'pixels'}
    for name in ('pretrained U-Net', 'random U-Net', 'raw pixels'):
        assert re.search(rf'^\| {name}.* \| [0-9.]+ \+- [0-9.]+ \| [0-9.]+-[0-9.]+ \|$', md,
                         re.M), name
    # the heatmap covers the grid, and its best cell is the pretrained probe's choice
    assert sorted(report['heatmap']) == ['4,10', '4,100', '8,10', '8,100']
    best = max(report['heatmap'], key=report['heatmap'].get)
    assert report['heatmap_best'] == [int(v) for v in best.split(',')]
    assert report['probes']['pretrained']['cell'] == report['heatmap_best']
    assert report['probes']['pixels']['cell'] is None
    for row in ('| samples |', '| real (held-out) |'):
        assert row in md
    # a missed target adds held-out top-1 along the pretraining (checkpoints at 1 and 2 its)
    if report['margin'] < 3:
        assert [p[0] for p in report['curve']] == [1, 2] and '![curve](curve.png)' in md
        assert all(0 <= p[2] <= 100 for p in report['curve'])
        assert osp.getsize(osp.join(out, 'curve.png')) > 0
    else:
        assert report['curve'] is None and 'curve.png' not in md


def test_accuracies_recomputed_by_mmpretrain(pipeline_run):
    from mmpretrain.evaluation import Accuracy
    _, _, report, predictions = pipeline_run
    labels = predictions['labels']
    assert labels.shape == (50, )
    for name, probe in report['probes'].items():
        preds = predictions[name]
        assert preds.shape == (2, 50)
        top1 = [float(Accuracy.calculate(torch.from_numpy(p), torch.from_numpy(labels)))
                for p in preds]
        assert probe['top1'] == pytest.approx(top1, abs=1e-9)
        assert probe['mean'] == pytest.approx(np.mean(top1))
        assert probe['std'] == pytest.approx(np.std(top1, ddof=1))
        low, high = probe['interval']
        assert low < probe['mean'] < high   # Wilson: ~ +-1.96 sqrt(p (1 - p) / n)
        p = probe['mean'] / 100
        assert high - low == pytest.approx(2 * 196 * np.sqrt(p * (1 - p) / 50), rel=0.25)
    margin = report['probes']['pretrained']['mean'] - max(
        report['probes'][n]['mean'] for n in ('random', 'pixels'))
    assert report['margin'] == pytest.approx(margin)


def test_sample_numbers_recomputed_from_saved_samples(pipeline_run):
    from mmdiffssl.analysis.sample_quality import SmallClassifier, frechet_distance
    out, _, report, _ = pipeline_run
    (samples_path, ) = glob.glob(osp.join(out, 'samples', '*.npy'))
    samples = np.load(samples_path)
    assert samples.shape == (6, 3, 32, 32) and samples.dtype == np.uint8
    (ckpt, ) = glob.glob(osp.join(out, 'classifier', '*.pth'))
    model = SmallClassifier(10)
    model.load_state_dict(torch.load(ckpt, weights_only=True)['state_dict'])
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(samples).float() / 127.5 - 1).numpy()
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    got = report['samples']
    assert got['confidence'] == pytest.approx(probs.max(1).mean(), rel=1e-5)
    hist = np.bincount(probs.argmax(1), minlength=10) / 6
    hist = hist[hist > 0]
    assert got['class_entropy'] == pytest.approx(-(hist * np.log(hist)).sum(), abs=1e-9)
    assert got['frechet'] > 0 and report['real']['frechet'] > 0
    assert got['num_images'] == report['real']['num_images'] == 6
    assert frechet_distance(np.eye(3), np.eye(3)) == pytest.approx(0, abs=1e-12)


@pytest.mark.slow
def test_second_run_reuses_caches_and_reproduces(pipeline_run, fashion_mnist_root):
    out, _, report, predictions = pipeline_run
    # a real process: --jobs 2 starts lane processes that import the tool's functions
    second = run_tool(pipeline_args(out, fashion_mnist_root, '2'), fresh_process=True)
    with open(osp.join(out, 'report.json')) as f:
        again = json.load(f)
    assert again['timing']['pretraining']['reused'] and again['timing']['samples']['reused']
    assert 'filling' not in second            # every feature cache was reused
    assert len(glob.glob(osp.join(out, 'pretrain', '*'))) == 1
    for name in ('probes', 'heatmap', 'samples', 'real', 'classifier_test_top1'):
        assert again[name] == report[name], name
    for name, value in np.load(osp.join(out, 'predictions.npz')).items():
        np.testing.assert_array_equal(value, predictions[name])


def test_pretraining_on_two_threads_is_deterministic(tmp_path, fashion_mnist_root):
    """The pretraining runs alone on ``--pretrain-threads`` threads: two runs at one count
    give the same weights, and the count is part of the run's key (another count is not
    reused)."""
    from mmengine.registry import init_default_scope

    import pipeline
    init_default_scope('mmpretrain')
    runs = []
    for name, threads in (('a', 2), ('b', 2), ('c', 1)):
        args = pipeline.parse_args([*TOY, '--work-dir', str(tmp_path / name), '--data',
                                    fashion_mnist_root, '--pretrain-threads', str(threads)])
        runs.append(pipeline.pretrain(args))
    assert torch.get_num_threads() == 1     # the lanes' count is restored
    assert runs[0]['key'] == runs[1]['key'] != runs[2]['key']
    assert runs[0]['settings']['threads'] == 2 and runs[2]['settings']['threads'] == 1
    first, second = (torch.load(r['checkpoint'], weights_only=False)['state_dict']
                     for r in runs[:2])
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
