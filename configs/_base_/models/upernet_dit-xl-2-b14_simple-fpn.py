# UPerNet on DiT-XL/2 block 14 (stride 16): DiffSimpleFPN builds strides 4, 8, 16, 32 from the
# one map (its in_channels from the backbone, DiffEncoderDecoder), UPerHead reads the four
# levels and the auxiliary FCN head the stride-16 one; the heads read the neck's channels.
_base_ = ['./upernet_adm-256-uncond-pyramid.py', './dit-xl-2-256_b14.py']
neck_channels = 256
model = dict(
    backbone={{_base_.dit_backbone}},
    neck=dict(type='DiffSimpleFPN', out_channels=neck_channels, num_outs=4,
              scale_factors=(4.0, 2.0, 1.0, 0.5), norm_cfg=dict(type='DiffLN2d')),
    decode_head=dict(in_channels=[neck_channels] * 4),
    auxiliary_head=dict(in_channels=neck_channels))
