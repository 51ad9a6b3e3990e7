"""The Fashion-MNIST canvas configs train through tools/train.py (CPU).

A small canvas set (64 x 64, 1-2 items) is generated with mmdiffssl's canvas tool; configs
inheriting the real canvas configs (heads narrowed, a few iterations, validation at the end)
train on it: Mask R-CNN with the pretrained variant (U-Net weights from a DDPMPretrainer
checkpoint, prefix 'unet.') and UPerNet with the random-init variant. Each run must log
finite losses and its metric (CocoMetric bbox/segm mAP, IoUMetric mIoU).
"""
import glob
import json
import math
import os.path as osp

import pytest
import torch

from conftest import run_tool
from dense_data import ROOT

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
pytest.importorskip('mmcv.ops')

from mmengine.config import Config  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402

from mmdiffssl.datasets.canvas import CanvasSpec, write_canvas_dataset  # noqa: E402
from mmdiffssl.datasets.fashion_mnist import DEBIAN_FASHION_MNIST  # noqa: E402
from mmdiffssl.utils.weight_init import redraw_parameters_  # noqa: E402

ENV = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}   # see tests/test_configs/folder_run.py
MASK_RCNN = osp.join(ROOT, 'configs/mask_rcnn/fashion_mnist_canvas/'
                     'mask-rcnn_adm-tiny-ddpm-frozen_fpn_1xb16-1x_fashion-mnist-canvas.py')
UPERNET = osp.join(ROOT, 'configs/upernet/fashion_mnist_canvas/'
                   'upernet_adm-tiny-random-frozen_1xb16-8k_fashion-mnist-canvas.py')
ITERS = 3          # UPerNet iterations
EPOCHS = 2         # Mask R-CNN epochs of 4 canvases at batch 2: 4 iterations


@pytest.fixture(scope='module')
def canvas_root(tmp_path_factory):
    if not osp.isdir(DEBIAN_FASHION_MNIST):
        pytest.skip('needs Debian dataset-fashion-mnist (tools/setup_env.sh installs it)')
    root = str(tmp_path_factory.mktemp('canvas'))
    write_canvas_dataset(root, dict(training=4, validation=2), seed=0,
                         spec=CanvasSpec(canvas_size=64, items_per_canvas=(1, 2),
                                         scale_range=(1.0, 1.2)))
    return root


@pytest.fixture(scope='module')
def ddpm_checkpoint(tmp_path_factory):
    """A DDPMPretrainer checkpoint of the canvas configs' arch (U-Net weights re-drawn)."""
    cfg = Config.fromfile(MASK_RCNN)
    pretrainer = MODELS.build(dict(type='DDPMPretrainer', arch=cfg.model.backbone.arch))
    redraw_parameters_(pretrainer.unet, torch.Generator().manual_seed(123))
    path = str(tmp_path_factory.mktemp('ddpm') / 'epoch_1.pth')
    torch.save(dict(meta=dict(), state_dict=pretrainer.state_dict()), path)
    return path, {k: v.clone() for k, v in pretrainer.unet.state_dict().items()}


def write_config(path, base, text):
    with open(path, 'w') as f:
        f.write(f'_base_ = {base!r}\n{text}')
    return path


def scalars(work_dir):
    """Every logged record of the run (mmengine's scalars.json, one JSON per line)."""
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    assert len(files) == 1, files
    with open(files[0]) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_mask_rcnn_pretrained_variant_trains_on_canvases(canvas_root, ddpm_checkpoint,
                                                         tmp_path):
    ckpt, unet_weights = ddpm_checkpoint
    config = write_config(str(tmp_path / 'mask_rcnn.py'), MASK_RCNN, f"""
data_root = {canvas_root!r} + '/'
model = dict(
    backbone=dict(checkpoint={ckpt!r}),
    neck=dict(out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(num_convs=1, in_channels=32, conv_out_channels=32)),
    train_cfg=dict(rpn=dict(sampler=dict(num=64)), rpn_proposal=dict(nms_pre=200),
                   rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100)))
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(loader, dataset=dict(data_root=data_root))
val_dataloader = dict(loader, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_validation.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={EPOCHS}, val_interval={EPOCHS})
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=100))
randomness = dict(seed=0)
""")
    # the pretrained variant's U-Net holds the checkpoint's weights, not a random draw
    cfg = Config.fromfile(config)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    assert model.backbone.blocks == (10, 8) and model.backbone.frozen
    loaded = model.backbone.unet.state_dict()      # the kept blocks (up to block 10)
    assert loaded.keys() < unet_weights.keys() and 'out.2.bias' not in loaded
    assert all(torch.equal(v, unet_weights[k]) for k, v in loaded.items())

    work = str(tmp_path / 'work')
    run_tool(['tools/train.py', config, '--work-dir', work], env=ENV)
    records = scalars(work)
    losses = [r['loss'] for r in records if 'loss' in r]
    assert len(losses) == 2 * EPOCHS and all(math.isfinite(v) for v in losses)
    assert {'loss_rpn_cls', 'loss_mask'} <= set(records[0])
    final = [r for r in records if 'coco/segm_mAP' in r]
    assert len(final) == 1 and 0 <= final[0]['coco/bbox_mAP'] <= 1


def test_upernet_random_variant_trains_on_canvases(canvas_root, tmp_path):
    config = write_config(str(tmp_path / 'upernet.py'), UPERNET, f"""
data_root = {canvas_root!r}
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(decode_head=dict(channels=16, norm_cfg=norm_cfg),
             auxiliary_head=dict(channels=16, norm_cfg=norm_cfg))
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(max_iters={ITERS}, val_interval={ITERS})
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval={ITERS}))
randomness = dict(seed=0)
""")
    work = str(tmp_path / 'work')
    run_tool(['tools/train.py', config, '--work-dir', work], env=ENV)
    records = scalars(work)
    losses = [r['loss'] for r in records if 'loss' in r]
    assert len(losses) == ITERS and all(math.isfinite(v) for v in losses)
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(records[0])
    final = [r for r in records if 'mIoU' in r]
    assert len(final) == 1 and 0 <= final[0]['mIoU'] <= 100
    assert osp.isfile(osp.join(work, f'iter_{ITERS}.pth'))
