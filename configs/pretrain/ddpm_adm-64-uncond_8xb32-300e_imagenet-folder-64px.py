# DDPM pretraining at 64x64 on an ImageNet-style folder of your own images
# (data/imagenet/train/<class or any subfolder>/*.JPEG; labels unused), with guided-diffusion's
# 64x64 ImageNet flags made unconditional, the hybrid loss (learn_sigma) and importance-sampled
# timesteps. 8 GPUs x 32 images; add --amp on GPU.
_base_ = ['../_base_/default_runtime_cls.py']
model = dict(
    type='DDPMPretrainer',
    arch=dict(preset='adm-64-cond', class_cond=False),
    timestep_sampler='loss-second-moment')
data_preprocessor = dict(
    type='mmpretrain.ClsDataPreprocessor', mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
    to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=64, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    dataset=dict(type='CustomDataset', data_root='data/imagenet', data_prefix='train',
                 with_label=False, pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.0))
param_scheduler = []
train_cfg = dict(by_epoch=True, max_epochs=300)
custom_hooks = [dict(type='EMAHook', momentum=1e-4, update_buffers=False, priority='ABOVE_NORMAL')]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3))
