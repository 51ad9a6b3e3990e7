# Mask R-CNN + simple pyramid on frozen PixArt-α XL/2 512 block 14 (t=100, empty prompt), COCO
# 1024 x 1024, 12 epochs, 8 GPUs x 2 images. Only the neck and the heads train.
_base_ = [
    '../_base_/models/mask-rcnn_pixart-alpha-xl-2-b14_simple-fpn.py',
    '../_base_/datasets/coco_instance_lsj-1024.py',
    '../_base_/schedules/detection_adamw-1x.py',
    'mmdet::_base_/default_runtime.py',
]
