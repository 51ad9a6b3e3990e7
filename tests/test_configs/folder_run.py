"""Helpers of the end-to-end tests: a generated image folder and a train + test run."""
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

from conftest import ROOT, run_tool

FOLDER_CONFIG = osp.join(ROOT, 'configs', 'diffssl', '{}_adm-tiny_1xb16-4e_folder-32px.py')
COLOURS = ((200, 50, 50), (50, 190, 60), (60, 70, 210))


def make_image_folder(root, train_per_class=16, val_per_class=8, size=32, seed=0):
    """mmpretrain CustomDataset layout ``root/{train,val}/class_<k>/<i>.png``, 4 classes:
    red, green and blue fields and a grey checkerboard (random phase), each with a random
    brightness (x0.8-1.2) and Gaussian pixel noise (sigma 20)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for split, count in (('train', train_per_class), ('val', val_per_class)):
        for label in range(4):
            folder = osp.join(root, split, f'class_{label}')
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                if label < 3:
                    img = np.empty((size, size, 3))
                    img[:] = COLOURS[label]
                else:
                    phase = rng.integers(0, 8)
                    board = ((xx + phase) // 4 + yy // 4) % 2 * 160 + 48
                    img = np.repeat(board[..., None], 3, axis=2).astype(float)
                img = img * rng.uniform(0.8, 1.2) + rng.normal(0, 20, img.shape)
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                    osp.join(folder, f'{i}.png'))
    return root


# One intra-op thread: the tiny U-Net's small ops run 3x faster than with 2 threads fighting
# other jobs for 2 shared cores, and results do not depend on it.
ENV = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}


def train_and_test(head, data_root, work_dir):
    """tools/train.py then tools/test.py on ``configs/diffssl/<head>_adm-tiny_*_folder``;
    returns the test metrics written by ``--out`` and the test log."""
    config = FOLDER_CONFIG.format(head)
    options = ['--cfg-options'] + [f'{loader}.{key}'
                                   for loader in ('train_dataloader', 'val_dataloader',
                                                  'test_dataloader')
                                   for key in (f'dataset.data_root={data_root}',
                                               'num_workers=0')]
    # Evaluate only through tools/test.py (no validation inside the training run).
    run_tool(['tools/train.py', config, '--work-dir', work_dir] + options
             + ['train_cfg.val_interval=100'], env=ENV)
    checkpoint = osp.join(work_dir, 'epoch_4.pth')
    assert osp.isfile(checkpoint), os.listdir(work_dir)
    out = osp.join(work_dir, 'metrics.json')
    log = run_tool(['tools/test.py', config, checkpoint, '--work-dir', work_dir, '--out', out]
                   + options, env=ENV)
    with open(out) as f:
        metrics = json.load(f)
    return metrics, log
