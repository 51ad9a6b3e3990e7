# UPerNet fine-tuning Stable Diffusion 1.5's U-Net (VAE frozen) at 0.1x the heads' lr, every
# U-Net block gradient-checkpointed; ADE20K 512 x 512, 80k iterations, 8 GPUs x 2 images.
_base_ = './upernet_sd-1-5-pyramid-frozen_8xb2-80k_ade20k-512x512.py'

model = dict(backbone=dict(frozen=False, with_cp=True))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
