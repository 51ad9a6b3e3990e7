# 160k-iteration segmentation schedule with AdamW: as segmentation_adamw-80k.py, twice as
# long (validation and checkpoint every 16000 iterations).
_base_ = './segmentation_adamw-80k.py'

max_iters = 160000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=max_iters, by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=16000)
default_hooks = dict(checkpoint=dict(interval=16000))
