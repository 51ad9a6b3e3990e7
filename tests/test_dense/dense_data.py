"""Tiny dense-prediction datasets and configs for the CPU tests of tests/test_dense.

- :func:`make_coco_shapes`: a 2-image COCO instance dataset (64 x 64 PNGs of filled
  rectangles and discs on plain backgrounds, polygon masks).
- :func:`make_ade_shapes`: a 2-image ADE20K-layout dataset (``images/{training,validation}``
  JPEGs, ``annotations/...`` PNG label maps where 0 is "other" and 1..3 are classes 0..2
  after ``reduce_zero_label``).
- :data:`TINY_ARCH`: a small ADM U-Net with 6 levels (strides 1..32) whose pyramid is
  blocks 20, 18, 16, 14, all 64 channels.
- :func:`tiny_mask_rcnn_cfg`, :func:`tiny_upernet_cfg`: the real configs with that U-Net, thin
  heads and the tiny data, as config files written next to the data.
"""
import json
import os
import os.path as osp

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

TINY_ARCH = dict(image_size=64, num_channels=32, num_res_blocks=1,
                 channel_mult='1,1,2,2,2,2', attention_resolutions='8',
                 num_head_channels=16, learn_sigma=False)
TINY_PYRAMID_CHANNELS = [64, 64, 64, 64]   # blocks 20, 18, 16, 14 (strides 4, 8, 16, 32)
TINY_STRIDE16_BLOCK = 16

COCO_CLASSES = ('rectangle', 'disc')
# (background BGR, [(category id, shape, (cx, cy, half-size), colour BGR), ...]) per image
_COCO_IMAGES = [
    ((40, 40, 40), [(1, 'rect', (20, 22, 11), (30, 30, 220)),
                    (2, 'disc', (44, 42, 13), (220, 120, 30))]),
    ((200, 200, 200), [(2, 'disc', (22, 40, 12), (40, 160, 40)),
                       (1, 'rect', (45, 20, 12), (160, 40, 160))]),
]


def _polygon(shape, cx, cy, r):
    if shape == 'rect':
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    return [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles]


def make_coco_shapes(root):
    """Write ``root/images/{0,1}.png`` and ``root/annotations.json``; return the json path."""
    import cv2
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    images, annotations = [], []
    for img_id, (background, shapes) in enumerate(_COCO_IMAGES, start=1):
        img = np.empty((64, 64, 3), np.uint8)
        img[:] = background
        for cat_id, shape, (cx, cy, r), colour in shapes:
            poly = np.array(_polygon(shape, cx, cy, r), np.float64)
            mask = np.zeros((64, 64), np.uint8)
            cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
            img[mask > 0] = colour
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            annotations.append(dict(
                id=len(annotations) + 1, image_id=img_id, category_id=cat_id, iscrowd=0,
                segmentation=[[float(v) for v in poly.reshape(-1)]],
                bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                area=float(mask.sum())))
        name = f'{img_id - 1}.png'
        cv2.imwrite(osp.join(root, 'images', name), img)
        images.append(dict(id=img_id, file_name=name, width=64, height=64))
    ann_file = osp.join(root, 'annotations.json')
    with open(ann_file, 'w') as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=[dict(id=i + 1, name=n) for i, n in
                                   enumerate(COCO_CLASSES)]), f)
    return ann_file


def make_ade_shapes(root):
    """ADE20K layout under ``root``: 2 training and the same 2 validation images.

    Label maps hold 0 ("other", ignored after ``reduce_zero_label``) in a border, and
    1, 2, 3 in regions of distinct colours (classes 0, 1, 2 of ADE20K's 150 after the
    reduction). Returns ``root``.
    """
    import cv2
    specs = [((90, 90, 90), [(1, (4, 4, 60, 30), (30, 30, 200)),
                             (2, (4, 30, 30, 60), (40, 180, 40)),
                             (3, (30, 30, 60, 60), (200, 60, 30))]),
             ((170, 170, 170), [(3, (4, 4, 34, 60), (200, 60, 30)),
                                (1, (34, 4, 60, 36), (30, 30, 200)),
                                (2, (34, 36, 60, 60), (40, 180, 40))])]
    for split in ('training', 'validation'):
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for i, (background, regions) in enumerate(specs):
            img = np.empty((64, 64, 3), np.uint8)
            img[:] = background
            label = np.zeros((64, 64), np.uint8)
            for value, (x0, y0, x1, y1), colour in regions:
                img[y0:y1, x0:x1] = colour
                label[y0:y1, x0:x1] = value
            cv2.imwrite(osp.join(root, 'images', split, f'{i}.jpg'), img,
                        [cv2.IMWRITE_JPEG_QUALITY, 100])
            cv2.imwrite(osp.join(root, 'annotations', split, f'{i}.png'), label)
    return root


def _write(path, text):
    with open(path, 'w') as f:
        f.write(text)
    return path


MASK_RCNN_CFG = osp.join(
    ROOT, 'configs/mask_rcnn/mask-rcnn_adm-256-uncond-pyramid-ft-cp_fpn_8xb2-1x_coco.py')
UPERNET_CFG = osp.join(
    ROOT, 'configs/upernet/upernet_adm-256-uncond-pyramid-ft-cp_8xb2-80k_ade20k-512x512.py')


ADM_TINY_BACKBONE = f"dict(arch=dict(_delete_=True, **{TINY_ARCH!r}), checkpoint=None)"


def tiny_mask_rcnn_cfg(data_root, iters, base=MASK_RCNN_CFG, lr=2e-3,
                       backbone=ADM_TINY_BACKBONE, neck=f'in_channels={TINY_PYRAMID_CHANNELS!r}, '):
    """A config file inheriting the real Mask R-CNN config, shrunk for a CPU overfit.

    The U-Net is :data:`TINY_ARCH` (trained from guided-diffusion's init, no checkpoint; or
    the ``backbone`` override given, config text), FPN/RPN/RoI widths are 32-64 (``neck``:
    config text of the neck's other overrides), the data is :func:`make_coco_shapes`' (no
    resize, no flip, no 1024 padding), and training runs ``iters`` iterations (2 images,
    batch 2: one iteration per epoch) with only a final checkpoint.
    """
    ann = osp.join(data_root, 'annotations.json')
    text = f"""
_base_ = {base!r}
model = dict(
    data_preprocessor=dict(batch_augments=None),
    backbone={backbone},
    neck=dict({neck}out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes=2),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(num_convs=2, in_channels=32, conv_out_channels=32, num_classes=2)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=64)),
        rpn_proposal=dict(nms_pre=200, max_per_img=100),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100), rcnn=dict(max_per_img=20)))
metainfo = dict(classes={COCO_CLASSES!r})
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(data_root={data_root!r}, ann_file={ann!r}, data_prefix=dict(img='images/'),
                 metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root={data_root!r}, ann_file={ann!r}, data_prefix=dict(img='images/'),
                 metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file={ann!r})
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={iters}, val_interval=100000)
optim_wrapper = dict(optimizer=dict(lr={lr}),
                     paramwise_cfg=dict(custom_keys={{'backbone': dict(lr_mult=1.0)}}))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20)]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval={iters}))
log_processor = dict(window_size=10)
randomness = dict(seed=0)
"""
    return _write(osp.join(data_root, 'tiny_mask_rcnn.py'), text)


def tiny_upernet_cfg(data_root, iters, base=UPERNET_CFG, lr=2e-3, noise=None,
                     backbone=None, in_channels=TINY_PYRAMID_CHANNELS, neck=''):
    """A config file inheriting the real UPerNet config, shrunk for a CPU overfit.

    :data:`TINY_ARCH` U-Net (or the ``backbone`` override given, config text), 32-channel
    heads with BN (single process) and no dropout (so a resumed run draws no torch random
    numbers a straight run would) reading ``in_channels`` (``neck``: config text of a neck
    override), the :func:`make_ade_shapes` data with 64 x 64 crops, ``iters`` iterations.
    """
    noise_line = f'noise={noise!r}, ' if noise else ''
    if backbone is None:
        backbone = (f"dict(arch=dict(_delete_=True, **{TINY_ARCH!r}), checkpoint=None, "
                    f"{noise_line})")
    text = f"""
_base_ = {base!r}
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=(64, 64)),
    backbone={backbone},{neck}
    decode_head=dict(in_channels={list(in_channels)!r}, channels=32, norm_cfg=norm_cfg,
                     dropout_ratio=0.0),
    auxiliary_head=dict(in_channels={in_channels[2]}, channels=16,
                        norm_cfg=norm_cfg, dropout_ratio=0.0))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomCrop', crop_size=(64, 64)),
    dict(type='PackSegInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root={data_root!r}, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root={data_root!r}, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters={iters}, val_interval=100000)
optim_wrapper = dict(optimizer=dict(lr={lr}),
                     paramwise_cfg=dict(custom_keys={{'backbone': dict(lr_mult=1.0)}}))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10)]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval={iters}))
log_processor = dict(window_size=10)
randomness = dict(seed=0)
"""
    return _write(osp.join(data_root, 'tiny_upernet.py'), text)
