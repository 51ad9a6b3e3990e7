"""tools/train.py, tools/test.py and tools/dist_train.sh on a stock mmpretrain config."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, free_port, run_tool

RESNET_CFG = osp.join(ROOT, 'configs/resnet/resnet18_1xb64-2e_fashion-mnist-32px.py')


def small_run_options(data_root, epochs, images=128):
    """A run on ``images`` training images (128 validation and test images)."""
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
            f'val_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}',
            f'train_dataloader.dataset.indices={images}',
            'val_dataloader.dataset.indices=128', 'test_dataloader.dataset.indices=128',
            'train_dataloader.num_workers=0',
            'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
            'train_dataloader.batch_size=32', f'train_cfg.max_epochs={epochs}',
            'randomness.seed=0']


def manual_accuracy(checkpoint, data_root):
    """Top-1 accuracy of the checkpoint on the 128 test images, computed without the metric."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmdiffssl.utils.compat import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()   # a stock ResNet loads a run checkpoint in this process
    cfg = Config.fromfile(RESNET_CFG)
    cfg.test_dataloader.dataset.data_root = data_root
    cfg.test_dataloader.dataset.indices = 128
    cfg.test_dataloader.num_workers = 0
    cfg.work_dir = osp.join(osp.dirname(checkpoint), 'manual')
    runner = Runner.from_cfg(cfg)
    runner.load_checkpoint(checkpoint)
    model = runner.model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in runner.test_dataloader:
            for sample in model.test_step(batch):
                correct += int(sample.pred_label.item() == sample.gt_label.item())
                total += 1
    return 100.0 * correct / total


def test_train_resume_test(tmp_path, fashion_mnist_root):
    work = str(tmp_path / 'work')
    # the tools' real command lines (the other runs of the suite are in-process)
    run_tool(['tools/train.py', RESNET_CFG, '--work-dir', work]
             + small_run_options(fashion_mnist_root, 1), fresh_process=True)
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))

    # Resume from the epoch-1 checkpoint (safe torch.load, mmengine's objects allow-listed).
    out = run_tool(['tools/train.py', RESNET_CFG, '--work-dir', work, '--resume',
                    osp.join(work, 'epoch_1.pth')] + small_run_options(fashion_mnist_root, 2))
    assert re.search(r'resumed epoch: 1', out), out[-3000:]
    ckpt = osp.join(work, 'epoch_2.pth')
    assert osp.isfile(ckpt)

    metrics_file = str(tmp_path / 'metrics.json')
    out = run_tool(['tools/test.py', RESNET_CFG, ckpt, '--work-dir', work, '--out',
                    metrics_file] + small_run_options(fashion_mnist_root, 2),
                   fresh_process=True)
    reported = json.load(open(metrics_file))['accuracy/top1']
    assert f'"accuracy/top1": {reported}' in out
    assert reported == pytest.approx(manual_accuracy(ckpt, fashion_mnist_root), abs=1e-6)


@pytest.mark.slow   # two runs, ~20 s of CPU (make test keeps test_train_resume_test)
def test_resume_auto_without_unsafe_load(tmp_path, fashion_mnist_root):
    """--resume without a path finds the last checkpoint; safe loading stays on."""
    work = str(tmp_path / 'work')
    env = {'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD': '0'}
    run_tool(['tools/train.py', RESNET_CFG, '--work-dir', work]
             + small_run_options(fashion_mnist_root, 1, images=64), env=env)
    out = run_tool(['tools/train.py', RESNET_CFG, '--work-dir', work, '--resume']
                   + small_run_options(fashion_mnist_root, 2, images=64), env=env)
    assert 'resumed epoch: 1' in out


def test_dist_train_two_cpu_ranks_agree(tmp_path, fashion_mnist_root):
    """torchrun with 2 processes (gloo): both ranks end with identical weights."""
    work = str(tmp_path / 'work')
    config = tmp_path / 'dump_weights.py'
    config.write_text(f"_base_ = '{RESNET_CFG}'\n"
                      "custom_imports = dict(imports=['mmdiffssl', 'weight_dump_hook'])\n"
                      "custom_hooks = [dict(type='WeightDumpHook')]\n")
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()),
               PYTHONPATH=os.pathsep.join([ROOT, osp.join(ROOT, 'tests', 'helpers')]))
    cmd = ['bash', osp.join(ROOT, 'tools/dist_train.sh'), str(config), '2', '--work-dir', work]
    cmd += small_run_options(fashion_mnist_root, 1)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert osp.isfile(osp.join(work, 'rank1_weights.pth')), proc.stdout[-3000:]
    w0 = torch.load(osp.join(work, 'rank0_weights.pth'))
    w1 = torch.load(osp.join(work, 'rank1_weights.pth'))
    assert w0.keys() == w1.keys()
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
