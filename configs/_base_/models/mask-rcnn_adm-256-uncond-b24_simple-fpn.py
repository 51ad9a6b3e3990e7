# Mask R-CNN on a single ADM block, ViTDet style: block 24 of adm-256-uncond (1024 channels,
# stride 16, the paper's best classification block) noised to t=100, and a simple feature
# pyramid (DiffSimpleFPN: deconvs to strides 4 and 8, identity at 16, max-pool to 32, then
# FPN's 1x1 and 3x3 convs with LayerNorm; max-pooled stride-64 level for the RPN).
# The U-Net stops after block 24: about 320 of its 1120 GMACs per 256 x 256 image.
# The neck's in_channels (1024) come from the backbone (DiffMaskRCNN).
_base_ = './mask-rcnn_adm-256-uncond-pyramid_fpn.py'

model = dict(
    backbone=dict(blocks=(24, )),
    neck=dict(
        _delete_=True,
        type='DiffSimpleFPN',
        out_channels=256,
        num_outs=5,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        norm_cfg=dict(type='DiffLN2d')))
