# Mask R-CNN + FPN on frozen SDXL base (VAE stride-4 feature + decoder pyramid up_blocks.2-0
# at t=100, null prompt), COCO 1024 x 1024 (SDXL's training size), 12 epochs, 8 GPUs x 2
# images. Only the FPN and the heads train; run checkpoints leave the U-Net and VAE out.
_base_ = [
    '../_base_/models/mask-rcnn_sdxl-base-pyramid_fpn.py',
    '../_base_/datasets/coco_instance_lsj-1024.py',
    '../_base_/schedules/detection_adamw-1x.py',
    'mmdet::_base_/default_runtime.py',
]
