# Mask R-CNN + FPN fine-tuning Stable Diffusion 1.5's U-Net (the VAE stays frozen) at 0.1x the
# lr of the FPN and heads, with diffusers' gradient checkpointing of every U-Net block; COCO
# 1024 x 1024, 12 epochs, 8 GPUs x 2 images. The pyramid reads up_blocks.3, the last block,
# and SDBackbone freezes the output layers the forward never runs, so every parameter that
# requires grad gets one (no find_unused_parameters needed).
_base_ = './mask-rcnn_sd-1-5-pyramid-frozen_fpn_8xb2-1x_coco.py'

model = dict(backbone=dict(frozen=False, with_cp=True))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
