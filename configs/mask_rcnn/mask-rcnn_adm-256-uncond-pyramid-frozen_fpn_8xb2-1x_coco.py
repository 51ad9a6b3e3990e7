# Mask R-CNN + FPN on the frozen adm-256-uncond pyramid (blocks 30, 27, 24, 21 at t=100),
# COCO 1024 x 1024, 12 epochs, 8 GPUs x 2 images. Only the FPN and the heads train; run
# checkpoints leave the U-Net out (it is reloaded from checkpoints/256x256_diffusion_uncond.pt).
_base_ = [
    '../_base_/models/mask-rcnn_adm-256-uncond-pyramid_fpn.py',
    '../_base_/datasets/coco_instance_lsj-1024.py',
    '../_base_/schedules/detection_adamw-1x.py',
    'mmdet::_base_/default_runtime.py',
]
