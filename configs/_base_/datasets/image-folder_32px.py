# Your own image folder (mmpretrain CustomDataset layout:
# data/image_folder/{train,val}/<class>/<image>.png), resized to 32x32 and normalised to
# [-1, 1] (mean = std = 127.5), what the diffusion U-Nets take. 4 classes unless overridden
# (set num_classes in data_preprocessor and the head too).
data_root = 'data/image_folder'
data_preprocessor = dict(
    num_classes=4, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True)
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(32, 32)),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train',
                 pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=32,
    num_workers=2,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val',
                 pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
