"""The fine-tuning dense configs under DDP without ``find_unused_parameters`` (issue 22).

2 CPU ranks (gloo, ``tools/dist_train.sh``) train the real fine-tuning configs, inherited
with the small U-Net and data of ``dense_data``, for 3 iterations: DDP stops at the second
iteration if a parameter that requires grad gets no gradient ("Expected to have finished
reduction in the prior iteration ..."), so a finished run with equal weights on both ranks
answers the question. The U-Net is pruned after the deepest block the pyramid reads; the
mutant keeps the unrun blocks (``prune=False``) and must fail with that error.

All three are ``slow`` (2-rank runs of 40 s and more; ``make test`` keeps one 2-rank run,
tests/test_tools/test_train_test.py): ``make test-slow``, or
``.venv/bin/python -m pytest -m slow tests/test_dense/test_dense_ddp.py``.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from conftest import ROOT, free_port
from dense_data import (MASK_RCNN_CFG, UPERNET_CFG, make_ade_shapes, make_coco_shapes,
                        tiny_mask_rcnn_cfg, tiny_upernet_cfg)

ENV = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}   # see tests/test_configs/folder_run.py
DDP_ERROR = 'Expected to have finished reduction in the prior iteration'


def tiny_config(kind, tmp_path, extra=''):
    """A config file: the tiny ``kind`` config for 3 iterations, plus ``extra`` lines and the
    hook that saves each rank's weights."""
    if kind == 'mask_rcnn':
        root = str(tmp_path / 'coco')
        make_coco_shapes(root)
        base = tiny_mask_rcnn_cfg(root, 3)  # 2 images, 1 per rank: one iteration an epoch
    else:
        base = tiny_upernet_cfg(make_ade_shapes(str(tmp_path / 'ade')), 3)
    config = tmp_path / 'ddp.py'
    config.write_text(f"_base_ = {base!r}\n{extra}"
                      "custom_imports = dict(imports=['mmdiffssl', 'weight_dump_hook'])\n"
                      "custom_hooks = [dict(type='WeightDumpHook')]\n")
    return str(config)


def dist_train(config, work):
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()), **ENV,
               PYTHONPATH=os.pathsep.join([ROOT, osp.join(ROOT, 'tests', 'helpers')]))
    return subprocess.run(['bash', osp.join(ROOT, 'tools/dist_train.sh'), config, '2',
                           '--work-dir', work], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)


@pytest.mark.parametrize('kind,real_config', [
    pytest.param('upernet', UPERNET_CFG, id='upernet', marks=pytest.mark.slow),
    pytest.param('mask_rcnn', MASK_RCNN_CFG, id='mask_rcnn',
                 marks=pytest.mark.slow),
])
def test_fine_tuning_trains_under_ddp_without_unused_parameter_search(
        tmp_path, kind, real_config):
    if kind == 'mask_rcnn':
        pytest.importorskip('mmcv.ops')
    assert not Config.fromfile(real_config).get('find_unused_parameters', False)
    config = tiny_config(kind, tmp_path)
    assert not Config.fromfile(config, import_custom_modules=False).get(
        'find_unused_parameters', False)
    work = str(tmp_path / 'work')
    proc = dist_train(config, work)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert 'find_unused_parameters=False' in proc.stdout  # the wrapper's config, logged
    w0 = torch.load(osp.join(work, 'rank0_weights.pth'))
    w1 = torch.load(osp.join(work, 'rank1_weights.pth'))
    assert any(k.startswith('backbone.unet.') for k in w0)
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key


@pytest.mark.slow
def test_unrun_blocks_that_require_grad_stop_ddp(tmp_path):
    """The mutant: the U-Net not pruned, its blocks after the deepest read get no gradient."""
    config = tiny_config('upernet', tmp_path, 'model = dict(backbone=dict(prune=False))\n')
    proc = dist_train(config, str(tmp_path / 'work'))
    assert proc.returncode != 0
    assert DDP_ERROR in proc.stdout, proc.stdout[-6000:]
