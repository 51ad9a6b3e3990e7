# UPerNet on Stable Diffusion 1.5 (local diffusers folder checkpoints/stable-diffusion-v1-5;
# configs/sd/README.md): the ADM UPerNet base (mmseg's recipe, RGB in [-1, 1]) with
# SDBackbone's decoder pyramid up_blocks.3, 2, 1, 0 at strides 8, 16, 32, 64 (320, 640, 1280,
# 1280 channels) at t=100 with the null prompt; auxiliary FCN head on output 1 (up_blocks.2,
# stride 16).
_base_ = ['./upernet_adm-256-uncond-pyramid.py', './sd-1-5_pyramid.py']

# Whole-image inference pads to 64 (VAE 8 x U-Net 8; mmseg crops predictions back); that
# and the heads' in_channels come from the backbone (DiffEncoderDecoder).
model = dict(
    backbone={{_base_.sd_pyramid_backbone}},
    auxiliary_head=dict(in_index=1))
