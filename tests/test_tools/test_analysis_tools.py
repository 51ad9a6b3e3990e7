"""Analysis tools: the block x timestep sweep (CSV, PNG, resume), PCA visualisation and the
feature-cache speed-up measurement."""
import csv
import glob
import json
import os.path as osp
import re

import numpy as np
import torch
from PIL import Image

from conftest import ROOT, run_tool
from mmdiffssl.analysis import pca_rgb

DEMO_CFG = osp.join(ROOT, 'configs/diffssl/linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py')
TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult='1,2,2',
            attention_resolutions='16,8', num_head_channels=16, learn_sigma=False)


def test_sweep_writes_csv_heatmap_and_resumes(tmp_path, fashion_mnist_root):
    work = str(tmp_path / 'sweep')
    args = [osp.join(ROOT, 'tools/analysis/sweep_blocks_timesteps.py'), DEMO_CFG,
            '--blocks', '4', '8', '--timesteps', '10', '600', '--work-dir', work,
            '--epochs', '5', '--cfg-options',
            f'train_dataloader.dataset.data_root={fashion_mnist_root}',
            f'val_dataloader.dataset.data_root={fashion_mnist_root}',
            'train_dataloader.dataset.indices=96', 'val_dataloader.dataset.indices=48']
    out = run_tool(args, fresh_process=True)
    assert 'best: block' in out
    with open(osp.join(work, 'sweep.csv')) as f:
        rows = list(csv.DictReader(f))
    assert {(r['block'], r['timestep']) for r in rows} == {
        ('4', '10'), ('4', '600'), ('8', '10'), ('8', '600')}
    assert all(0 <= float(r['top1']) <= 100 for r in rows)
    assert max(float(r['top1']) for r in rows) > 20  # 10 classes: chance is 10%
    png = Image.open(osp.join(work, 'sweep.png'))
    assert png.size[0] > 100 and png.size[1] > 100

    # Rerun with one more timestep: finished cells are kept, only new ones are computed.
    run_tool(args[:6] + ['10', '600', '300'] + args[8:])
    with open(osp.join(work, 'sweep.csv')) as f:
        rerun = list(csv.DictReader(f))
    assert rerun[:4] == rows and len(rerun) == 6


def test_pca_rgb_separates_regions():
    feature = torch.zeros(8, 6, 6)
    feature[:, :, 3:] = torch.randn(8, 1, 1) * 5
    rgb = pca_rgb(feature + 0.01 * torch.randn(8, 6, 6))
    assert rgb.shape == (6, 6, 3) and rgb.min() >= 0 and rgb.max() <= 1
    left, right = rgb[:, :3, 0].mean(), rgb[:, 3:, 0].mean()
    assert abs(left - right) > 0.8


def test_visualize_features_png(tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            folder / f'{i}.png')
    out = str(tmp_path / 'pca.png')
    run_tool([osp.join(ROOT, 'tools/analysis/visualize_features.py'), str(folder), out,
              '--arch', json.dumps(TINY), '--blocks', '4', '9', '--timesteps', '50', '300',
              '--size', '32'], fresh_process=True)
    assert Image.open(out).size == (32 * 5, 32 * 2)


def test_cache_speedup_times_online_and_cached_epochs(tmp_path):
    """The tool fills a cache for generated images and prints both epoch times and the ratio
    (no speed is asserted: the number is the tool's output, not a test criterion)."""
    work = str(tmp_path / 'speedup')
    out = run_tool([osp.join(ROOT, 'tools/analysis/cache_speedup.py'), DEMO_CFG,
                    '--images', '6', '--image-size', '32', '--work-dir', work, '--cfg-options',
                    'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0'],
                   fresh_process=True)
    match = re.search(r'online epoch: ([\d.]+) s, cached epoch: ([\d.]+) s, '
                      r'speed-up: ([\d.]+)x', out)
    assert match, out[-2000:]
    assert all(float(value) > 0 for value in match.groups())
    assert '6 images: online' in out
    assert glob.glob(osp.join(work, 'feature_cache', '*', 'features.npy'))
    assert len(glob.glob(osp.join(work, 'images', 'class_*', '*.png'))) == 6
