# Mask R-CNN + FPN on the small ADM U-Net of ./adm-tiny_32px_dense.py for Fashion-MNIST
# canvases (10 classes): ./mask-rcnn_adm-256-uncond-pyramid_fpn.py (mmdet's R-50-FPN recipe,
# the U-Net's [-1, 1] input) with that U-Net swapped in. It gives strides 2 and 4 (blocks 10,
# 8); FPN adds strides 8, 16, 32 by max-pooling. Every stride is half of mmdet's R-50 setting,
# and so are the anchor sizes (scale 8: 16 to 256 px, for items of about 28-42 px on 128 px
# canvases) and the RoI level boundaries (finest_scale 28: RoIs under 56 px read stride 2).
_base_ = ['./mask-rcnn_adm-256-uncond-pyramid_fpn.py', './adm-tiny_32px_dense.py']

strides = [2, 4, 8, 16, 32]
model = dict(
    # canvases keep their size (no fixed 1024 x 1024 padding); they are padded to the
    # U-Net's total downsampling 2 ** (levels - 1) = 4 (pad_size_divisor from the backbone,
    # as the FPN's in_channels: 64, 64)
    data_preprocessor=dict(batch_augments=None),
    backbone={{_base_.adm_tiny_dense_backbone}},
    rpn_head=dict(anchor_generator=dict(strides=strides)),
    roi_head=dict(
        bbox_roi_extractor=dict(featmap_strides=strides[:4], finest_scale=28),
        bbox_head=dict(num_classes=10),
        mask_roi_extractor=dict(featmap_strides=strides[:4], finest_scale=28),
        mask_head=dict(num_classes=10)))
