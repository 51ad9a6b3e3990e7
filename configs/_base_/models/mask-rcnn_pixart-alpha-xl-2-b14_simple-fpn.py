# Mask R-CNN on PixArt-α XL/2 block 14 (stride 16) with the simple pyramid of the ADM b24 base
# (see mask-rcnn_dit-xl-2-b14_simple-fpn.py); in_channels and padding from the backbone.
_base_ = ['./mask-rcnn_adm-256-uncond-b24_simple-fpn.py', './pixart-alpha-xl-2-512_b14.py']
model = dict(backbone={{_base_.pixart_backbone}})
