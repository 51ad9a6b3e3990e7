# UPerNet on the frozen adm-256-uncond pyramid (blocks 30, 27, 24, 21 at t=100; auxiliary FCN
# head on block 24), ADE20K 512 x 512 crops, 80k iterations, 8 GPUs x 2 images. Only the
# heads train; run checkpoints leave the U-Net out (reloaded from `checkpoint=`).
_base_ = [
    '../_base_/models/upernet_adm-256-uncond-pyramid.py',
    '../_base_/datasets/ade20k_adm-512x512.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/segmentation_adamw-80k.py',
]
