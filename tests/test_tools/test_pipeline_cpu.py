"""tools/pipeline_cpu.sh end to end at toy sizes (slow: six tool processes and 1000 DDIM
steps: 1.5 to 3.5 minutes on 2 shared cores): every step runs, the summary prints both probe
accuracies and the paths of the heatmap and the sample grid, and those files exist."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from conftest import ROOT

TOY = dict(PRETRAIN_IMAGES='64', PRETRAIN_BATCH='32', PROBE_TRAIN='200', PROBE_TEST='100',
           SWEEP_BLOCKS='4 8', SWEEP_TIMESTEPS='10 100', SWEEP_TRAIN='100', SWEEP_TEST='50',
           SAMPLES='1')


@pytest.mark.slow
def test_pipeline_runs_end_to_end(tmp_path, fashion_mnist_root):
    out = str(tmp_path / 'pipeline')
    env = dict(os.environ, OUT=out, DATA=fashion_mnist_root, PYTHON=sys.executable, **TOY)
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', 'pipeline_cpu.sh')], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-6000:]
    log = proc.stdout
    for step in range(1, 6):
        assert f'] {step}/5 ' in log
    accuracies = {name: float(value) for name, value in
                  re.findall(r'^  (pretrained|random) U-Net.*:\s+([0-9.]+)$', log, re.M)}
    assert set(accuracies) == {'pretrained', 'random'}, log[-3000:]
    for value in accuracies.values():
        assert 10 < value <= 100   # 10 classes: a probe that learned nothing gives about 10
    heatmap = re.search(r'^heatmap: +(\S+)', log, re.M)[1]
    grid = re.search(r'^sample grid: (\S+)', log, re.M)[1]
    assert heatmap == osp.join(out, 'sweep', 'sweep.png') and osp.getsize(heatmap) > 0
    assert grid == osp.join(out, 'samples.png') and osp.getsize(grid) > 0
    with open(osp.join(out, 'sweep', 'sweep.csv')) as f:
        assert len(f.read().split()) == 1 + 2 * 2   # header + blocks x timesteps
    assert osp.isfile(osp.join(out, 'pretrain', 'epoch_1.pth'))
