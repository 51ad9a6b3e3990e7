# UPerNet + simple pyramid on frozen DiT-XL/2 256 block 14 (t=100, null class), ADE20K
# 512 x 512 crops, 80k iterations, 8 GPUs x 2 images. Only the neck and the heads train.
_base_ = [
    '../_base_/models/upernet_dit-xl-2-b14_simple-fpn.py',
    '../_base_/datasets/ade20k_adm-512x512.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/segmentation_adamw-80k.py',
]
