# Mask R-CNN + simple pyramid on frozen DiT-XL/2 256 block 14 (t=100, null class), COCO
# 1024 x 1024 (positional embeddings interpolated from the 32 x 32 training grid to 64 x 64),
# 12 epochs, 8 GPUs x 2 images. Only the neck and the heads train; run checkpoints leave the
# transformer and VAE out (reloaded from checkpoints/DiT-XL-2-256).
_base_ = [
    '../_base_/models/mask-rcnn_dit-xl-2-b14_simple-fpn.py',
    '../_base_/datasets/coco_instance_lsj-1024.py',
    '../_base_/schedules/detection_adamw-1x.py',
    'mmdet::_base_/default_runtime.py',
]
