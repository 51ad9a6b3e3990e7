# Mask R-CNN (mmdet's R-50-FPN recipe) on OpenAI's unconditional 256x256 ADM U-Net
# (256x256_diffusion_uncond.pt, the paper's model; put it in checkpoints/).
# Backbone: the last decoder block at each of strides 4, 8, 16, 32 (blocks='pyramid':
# blocks 30, 27, 24, 21 with 512, 512, 1024, 1024 channels; `python tools/print_blocks.py
# adm-256-uncond`), of the image noised to t=100 (see configs/mask_rcnn/README.md for why).
# FPN adds the stride-64 level for the RPN by max-pooling, as with ResNet.
# DiffMaskRCNN = mmdet's MaskRCNN that builds the backbone first (meta device) and fills
# what the configs leave None: the neck's in_channels (the backbone's out_channels) and
# pad_size_divisor (its size_divisibility). None replaces the R-50 numbers of mmdet's base.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', './adm-256-uncond_pyramid.py']
custom_imports = dict(imports=['mmdiffssl'], allow_failed_imports=False)

model = dict(
    type='DiffMaskRCNN',
    data_preprocessor=dict(
        # the U-Net reads RGB in [-1, 1]: (x - 127.5) / 127.5; padding (value 0 after
        # normalisation) is mid-grey
        mean=[127.5, 127.5, 127.5],
        std=[127.5, 127.5, 127.5],
        bgr_to_rgb=True,
        pad_mask=True,
        # the U-Net's total downsampling 2 ** (levels - 1) (adm-256-uncond: 6 levels, 32;
        # the skip connections need every level's map to halve exactly), from the backbone
        pad_size_divisor=None,
        # fixed 1024 x 1024 training input (ViTDet's large-scale-jitter recipe; the
        # datasets base crops to at most 1024 x 1024)
        batch_augments=[
            dict(type='BatchFixedSizePad', size=(1024, 1024), img_pad_value=0,
                 pad_mask=True, mask_pad_value=0, pad_seg=False)
        ]),
    backbone={{_base_.adm_pyramid_backbone}},
    # in_channels: those of blocks 30, 27, 24, 21, from the backbone
    neck=dict(in_channels=None, out_channels=256, num_outs=5))
