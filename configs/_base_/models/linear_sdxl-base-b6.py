# Linear probe on frozen SDXL base, block 6 (up_blocks.1 before its upsampler: 640 channels,
# stride 16; 16 x 16 at 256 px), t=100, null prompt (pool 2 x 2, linear; in_channels from the
# backbone).
_base_ = ['./diffssl_linear_adm-256-uncond.py', './sdxl-base_pyramid-stride4.py']
model = dict(backbone={{_base_.sdxl_pyramid_backbone}})
