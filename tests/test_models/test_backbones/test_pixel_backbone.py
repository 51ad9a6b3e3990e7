"""PixelBackbone: the raw-pixel baseline returns the image, and its linear-probe config learns
Fashion-MNIST through tools/train.py and tools/test.py."""
import json
import os.path as osp

import pytest
import torch

from conftest import ROOT, run_tool
from mmdiffssl.models.backbones import PixelBackbone

CONFIG = osp.join(ROOT, 'configs', 'diffssl', 'linear_pixels_1xb64-2e_fashion-mnist-32px.py')


def test_returns_the_image_and_checks_channels():
    x = torch.randn(2, 3, 8, 8)
    out = PixelBackbone()(x)
    assert isinstance(out, tuple) and out[0] is x
    with pytest.raises(ValueError, match='3-channel'):
        PixelBackbone()(torch.randn(2, 1, 8, 8))


def test_pixel_probe_learns_fashion_mnist(tmp_path, fashion_mnist_root):
    pytest.importorskip('mmpretrain')
    options = ['--cfg-options'] + [
        f'{loader}.{key}' for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        for key in (f'dataset.data_root={fashion_mnist_root}', 'num_workers=0')] + [
        'train_dataloader.dataset.indices=2000', 'val_dataloader.dataset.indices=1000',
        'test_dataloader.dataset.indices=1000', 'train_cfg.max_epochs=1',
        'train_cfg.val_interval=10']
    work = str(tmp_path / 'work')
    env = {'OMP_NUM_THREADS': '1'}
    run_tool(['tools/train.py', CONFIG, '--work-dir', work] + options, env=env)
    out = str(tmp_path / 'metrics.json')
    run_tool(['tools/test.py', CONFIG, osp.join(work, 'epoch_1.pth'), '--work-dir', work,
              '--out', out] + options, env=env)
    with open(out) as f:
        accuracy = json.load(f)['accuracy/top1']
    assert accuracy > 65.0, accuracy   # chance is 10%
