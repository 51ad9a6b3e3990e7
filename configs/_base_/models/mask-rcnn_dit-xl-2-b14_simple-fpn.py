# Mask R-CNN on DiT-XL/2 block 14 (stride 16), ViTDet style: the single-block simple pyramid of
# the ADM b24 base (DiffSimpleFPN: deconvs to strides 4 and 8, identity at 16, max-pool to 32;
# stride-64 level for the RPN). The neck's in_channels (1152) and the padding (16) come from
# the backbone (DiffMaskRCNN).
_base_ = ['./mask-rcnn_adm-256-uncond-b24_simple-fpn.py', './dit-xl-2-256_b14.py']
model = dict(backbone={{_base_.dit_backbone}})
