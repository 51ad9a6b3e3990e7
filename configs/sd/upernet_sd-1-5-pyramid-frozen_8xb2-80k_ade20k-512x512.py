# UPerNet on frozen Stable Diffusion 1.5 (decoder pyramid up_blocks.3-0 at strides 8-64,
# t=100, null prompt; auxiliary FCN head on up_blocks.2), ADE20K 512 x 512 crops, 80k
# iterations, 8 GPUs x 2 images. Only the heads train; run checkpoints leave the U-Net and VAE
# out (reloaded from checkpoints/stable-diffusion-v1-5).
_base_ = [
    '../_base_/models/upernet_sd-1-5-pyramid.py',
    '../_base_/datasets/ade20k_adm-512x512.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/segmentation_adamw-80k.py',
]
