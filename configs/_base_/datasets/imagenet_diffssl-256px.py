# ImageNet-1k with the paper's augmentation (the authors' guided-diffusion data loader): no
# RandomResizedCrop; train: shorter side resized to a random integer in [256, 320], random
# 256x256 crop, horizontal flip; val: shorter side 256, centre 256x256 crop. Resizing as the
# authors and ADM's training data: box-filter halving while the shorter side is >= 2x the target,
# then bicubic (BoxBicubicResizeEdge). Pixels to [-1, 1] (mean = std = 127.5), RGB.
# Layout: data/imagenet/{train,val}/<wnid>/*.JPEG (or meta/{train,val}.txt, see mmpretrain).
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
data_preprocessor = dict(
    num_classes=1000, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomChoiceResize', scales=list(range(256, 321)),
         resize_type='BoxBicubicResizeEdge'),
    dict(type='RandomCrop', crop_size=256),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='BoxBicubicResizeEdge', scale=256),
    dict(type='CenterCrop', crop_size=256),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='val', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
