# COCO instance segmentation at 1024 x 1024 (ViTDet's large-scale jitter): training images are
# rescaled by a random factor in [0.1, 2.0] of the 1024 x 1024 fit, cropped to at most
# 1024 x 1024 and padded to exactly 1024 x 1024 by the model's data preprocessor
# (BatchFixedSizePad); testing fits the long side to 1024 and pads to a multiple of 32.
# Images live in data/coco/{train2017,val2017}/, annotations in data/coco/annotations/.
_base_ = 'mmdet::_base_/datasets/coco_instance.py'

image_size = (1024, 1024)
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
# 8 GPUs x 2 images
train_dataloader = dict(batch_size=2, num_workers=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=2, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
