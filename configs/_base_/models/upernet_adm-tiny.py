# UPerNet on the small ADM U-Net of ./adm-tiny_32px_dense.py for Fashion-MNIST canvases
# (10 classes; the background is ignored, as ADE20K's "other"):
# ./upernet_adm-256-uncond-pyramid.py (mmseg's recipe, the U-Net's [-1, 1] input) with that
# U-Net swapped in. UPerHead on blocks 10 and 8 (strides 2 and 4, 64 channels each), its
# pyramid pooling on block 8; auxiliary FCN head on block 8. Head widths are scaled to the
# 64-channel U-Net (mmseg's 512/256 are for 1024-2048 channels).
_base_ = ['./upernet_adm-256-uncond-pyramid.py', './adm-tiny_32px_dense.py']

# canvases of any size: no fixed crop size; padding to the U-Net's total downsampling
# 2 ** (levels - 1) = 4 (size_divisor and test_cfg.size_divisor) and the heads' in_channels
# (64, 64) come from the backbone (DiffEncoderDecoder)
data_preprocessor = dict(size=None)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone={{_base_.adm_tiny_dense_backbone}},
    decode_head=dict(in_index=[0, 1], channels=128, num_classes=10),
    auxiliary_head=dict(in_index=1, channels=64, num_classes=10))
