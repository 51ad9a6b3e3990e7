# Tiny-ImageNet (200 classes, 64x64) as an mmpretrain CustomDataset (the image-folder base),
# pixels normalised to [-1, 1]. Layout: data/tiny-imagenet-200/{train,val}/<wnid>/**/*.JPEG.
# The official archive's train split already has it; sort val/images into val/<wnid>/ by
# val/val_annotations.txt (configs/repfusion/README.md has the command). 32 images per GPU.
_base_ = './image-folder_32px.py'
data_root = 'data/tiny-imagenet-200'
data_preprocessor = dict(num_classes=200)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64),   # area 0.08-1 (mmpretrain's and RepFusion's)
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64)),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=4, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64, num_workers=4, dataset=dict(data_root=data_root, pipeline=test_pipeline))
val_evaluator = dict(topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
