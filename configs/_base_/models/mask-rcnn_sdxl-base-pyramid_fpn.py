# Mask R-CNN on SDXL base: the ADM pyramid Mask R-CNN base with SDXLBackbone's stride-4 VAE
# feature and decoder pyramid at strides 8, 16, 32 (FPN's in_channels and the padding, 32,
# from the backbone; FPN adds the stride-64 level by max-pooling, num_outs=5 of the base).
_base_ = ['./mask-rcnn_adm-256-uncond-pyramid_fpn.py', './sdxl-base_pyramid-stride4.py']
model = dict(backbone={{_base_.sdxl_pyramid_backbone}})
