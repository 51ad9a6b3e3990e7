"""Mask R-CNN on the diffusion pyramid through tools/train.py and tools/test.py (CPU).

The real fine-tuning config (mask-rcnn_adm-256-uncond-pyramid-ft-cp_fpn_8xb2-1x_coco.py:
FPN on blocks 'pyramid', with_cp, lr_mult) is inherited by a small config written next to a
generated 2-image COCO dataset; the tiny U-Net trains with it until it overfits, then
tools/test.py must report bbox and segm AP50 > 0.5 (mmdet's CocoMetric) and draw the
predictions as PNGs (DetVisualizationHook through --cfg-options).
"""
import glob
import json
import os.path as osp

import numpy as np
import pytest

from conftest import run_tool
from dense_data import TINY_ARCH, make_coco_shapes, tiny_mask_rcnn_cfg

pytest.importorskip('mmdet')
pytest.importorskip('mmcv.ops')

ENV = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}   # see tests/test_configs/folder_run.py
ITERS = 80       # batch 2 = both images: one iteration per epoch; AP50 reaches 1.0 by 60


def test_tiny_arch_has_the_pyramid_strides():
    out = run_tool(['tools/print_blocks.py', json.dumps(TINY_ARCH)], env=ENV)
    rows = [line.split() for line in out.splitlines()
            if line.split()[:1] and line.split()[0].isdigit()]
    output_strides = {int(r[3]) for r in rows if r[1] == 'output'}
    assert {4, 8, 16, 32} <= output_strides
    by_block = {int(r[0]): (int(r[2]), int(r[3])) for r in rows}
    assert [by_block[b] for b in (20, 18, 16, 14)] == [(64, 4), (64, 8), (64, 16), (64, 32)]


@pytest.mark.slow   # a whole train + test run of Mask R-CNN, ~36 s of CPU
def test_mask_rcnn_overfits_two_images_and_draws(tmp_path):
    root = str(tmp_path / 'coco')
    make_coco_shapes(root)
    config = tiny_mask_rcnn_cfg(root, ITERS)
    work = str(tmp_path / 'work')
    run_tool(['tools/train.py', config, '--work-dir', work], env=ENV)
    checkpoint = osp.join(work, f'epoch_{ITERS}.pth')
    assert osp.isfile(checkpoint)

    out = osp.join(work, 'metrics.json')
    log = run_tool(['tools/test.py', config, checkpoint, '--work-dir', work, '--out', out,
                    '--cfg-options', 'default_hooks.visualization.draw=True',
                    'default_hooks.visualization.test_out_dir=vis'], env=ENV)
    with open(out) as f:
        metrics = json.load(f)
    assert 'metrics: ' in log
    print('mask r-cnn test metrics:', metrics)
    assert metrics['coco/bbox_mAP_50'] > 0.5, metrics
    assert metrics['coco/segm_mAP_50'] > 0.5, metrics

    import cv2
    drawn = sorted(glob.glob(osp.join(work, '*', 'vis', '*.png')))
    assert [osp.basename(p) for p in drawn] == ['0.png', '1.png']
    for path in drawn:
        img = cv2.imread(path)
        source = cv2.imread(osp.join(root, 'images', osp.basename(path)))
        # ground truth drawn on the left half, the predictions on the right half
        assert img is not None and img.shape == (64, 128, 3) and source.shape == (64, 64, 3)
        assert np.abs(img[:, 64:].astype(int) - source).mean() > 5
