# UPerNet + simple pyramid on frozen PixArt-α XL/2 512 block 14 (t=100, empty prompt), ADE20K
# 512 x 512 crops, 80k iterations, 8 GPUs x 2 images. Only the neck and the heads train.
_base_ = [
    '../_base_/models/upernet_pixart-alpha-xl-2-b14_simple-fpn.py',
    '../_base_/datasets/ade20k_adm-512x512.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/segmentation_adamw-80k.py',
]
