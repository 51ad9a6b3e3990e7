# UPerNet on a frozen, randomly initialised (re-drawn) small ADM U-Net: the floor for the
# pretrained variant (./upernet_adm-tiny-ddpm-frozen_1xb16-8k_fashion-mnist-canvas.py, same
# everything but the U-Net weights). Fashion-MNIST canvases (10 classes, background ignored),
# 8k iterations (about 25 epochs of 5000 canvases), 1 GPU x 16 images. Only the heads train.
_base_ = [
    '../../_base_/models/upernet_adm-tiny.py',
    '../../_base_/datasets/fashion-mnist-canvas_semantic.py',
    'mmseg::_base_/default_runtime.py',
    '../../_base_/schedules/segmentation_adamw-80k.py',
]

# the AdamW recipe of the 80k schedule, shortened: 500 warm-up iterations, poly decay to 8k
max_iters = 8000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=500, end=max_iters, by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=2000)
default_hooks = dict(checkpoint=dict(interval=2000))
