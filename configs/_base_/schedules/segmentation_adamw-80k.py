# 80k-iteration segmentation schedule with AdamW (mmseg's Swin/ViT UPerNet recipe), total
# batch 16 (8 GPUs x 2 images): lr 1e-4, weight decay 0.01 (none on norm layers*), linear
# warm-up over 1500 iterations, then poly decay (power 1) to 0; validation and checkpoint
# every 8000 iterations.
_base_ = 'mmseg::_base_/schedules/schedule_80k.py'

max_iters = 80000
# * mmengine applies norm_decay_mult only to parameters no custom_keys entry matches: with
#   the fine-tuning configs' {'backbone': dict(lr_mult=0.1)} the U-Net's GroupNorms keep
#   the full weight decay.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=max_iters, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=8000)
# mmseg's SegVisualizationHook builds the train dataloader when it draws (it reads
# runner.iter): this wrapper draws the same without it, so `tools/test.py --show-dir` runs with
# only the test split on disk (mmdiffssl/engine/seg_visualization_hook.py)
default_hooks = dict(visualization=dict(type='StandaloneSegVisualizationHook'))
