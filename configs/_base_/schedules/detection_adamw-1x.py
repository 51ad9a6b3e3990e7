# 1x detection schedule (12 epochs) with AdamW, total batch 16 (8 GPUs x 2 images):
# lr 1e-4, weight decay 0.05 (none on norm layers*), linear warm-up over 500 iterations,
# lr x 0.1 after epochs 8 and 11. AdamW rather than mmdet's SGD 0.02: the diffusion
# features are not batch-normalised like a ResNet's, and ViTDet-style backbones are tuned
# with AdamW.
max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# * mmengine applies norm_decay_mult only to parameters no custom_keys entry matches: with
#   the fine-tuning configs' {'backbone': dict(lr_mult=0.1)} the U-Net's GroupNorms keep
#   the full weight decay.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1)
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
