# UPerNet (mmseg's recipe) on OpenAI's unconditional 256x256 ADM U-Net
# (256x256_diffusion_uncond.pt; put it in checkpoints/): the last decoder block at strides
# 4, 8, 16, 32 (blocks 30, 27, 24, 21: 512, 512, 1024, 1024 channels) of the image noised
# to t=100; auxiliary FCN head on output 2 (block 24, stride 16).
# DiffEncoderDecoder = mmseg's EncoderDecoder that builds the backbone first (meta device) and
# fills what the configs leave None: the heads' in_channels (the backbone's out_channels at
# their in_index) and the test-time padding (its size_divisibility). None replaces the R-50
# numbers of mmseg's base.
_base_ = ['mmseg::_base_/models/upernet_r50.py', './adm-256-uncond_pyramid.py']
custom_imports = dict(imports=['mmdiffssl'], allow_failed_imports=False)

data_preprocessor = dict(
    type='SegDataPreProcessor',
    # RGB in [-1, 1]; padding (0 after normalisation) is mid-grey
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    # training crops are padded to 512 x 512; whole-image inference pads to the U-Net's total
    # downsampling 2 ** (levels - 1) (32 for adm-256-uncond's 6 levels: test_cfg is filled
    # from the backbone) and mmseg crops predictions back
    size=(512, 512))
model = dict(
    type='DiffEncoderDecoder',
    data_preprocessor=data_preprocessor,
    # mmseg's EncoderDecoder would pass `pretrained` into the backbone
    pretrained=None,
    backbone={{_base_.adm_pyramid_backbone}},
    decode_head=dict(in_channels=None, in_index=[0, 1, 2, 3], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=None, in_index=2, channels=256, num_classes=150),
    test_cfg=dict(mode='whole'))
