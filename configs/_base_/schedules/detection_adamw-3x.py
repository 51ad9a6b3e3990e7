# 3x detection schedule (36 epochs) with AdamW, total batch 16: as detection_adamw-1x.py,
# with the lr x 0.1 steps after epochs 27 and 33.
_base_ = './detection_adamw-1x.py'

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1)
]
