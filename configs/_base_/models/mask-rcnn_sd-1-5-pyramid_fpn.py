# Mask R-CNN on Stable Diffusion 1.5 (local diffusers folder checkpoints/stable-diffusion-v1-5;
# configs/sd/README.md): the ADM Mask R-CNN base (mmdet's R-50-FPN recipe, RGB in [-1, 1],
# fixed 1024 x 1024 training input) with SDBackbone's outputs: the VAE's stride-4 feature
# (512 channels) and the decoder pyramid up_blocks.3, 2, 1, 0 at strides 8, 16, 32, 64 (320,
# 640, 1280, 1280 channels) at t=100 with the null prompt. FPN takes all five levels
# (strides 4-64, the RPN's anchor strides), so it adds no extra level.
_base_ = ['./mask-rcnn_adm-256-uncond-pyramid_fpn.py', './sd-1-5_pyramid-stride4.py']

# The VAE downsamples by 8 and the U-Net by 8 more: pad_size_divisor is 64, and the FPN's
# in_channels are SDBackbone.out_channels (VAE stride 4, up_blocks.3, 2, 1, 0), both from the
# backbone (DiffMaskRCNN).
model = dict(backbone={{_base_.sd_pyramid_backbone}})
