# The dense-prediction backbone of the Fashion-MNIST canvas configs: the small 32x32 ADM
# (./adm-tiny_32px.py, the arch configs/pretrain/ddpm_adm-tiny_1xb64-5e_fashion-mnist-32px.py
# pretrains), run convolutionally on whole canvases. It has 3 levels (strides 1, 2, 4), so
# its total downsampling is 4; the pyramid is the last decoder block at strides 2 and 4
# (blocks 10 and 8, 64 channels each; `python tools/print_blocks.py
# configs/_base_/models/adm-tiny_32px.py`). The U-Net stops after block 10.
# Random init, re-drawn (guided-diffusion's zero-init would make every residual branch dead);
# the *-ddpm-* configs load the pretraining run's EMA weights instead.
# `_delete_` drops the ResNet settings of the mmdet/mmseg base the model dict merges into.
_base_ = './adm-tiny_32px.py'

adm_tiny_dense_backbone = dict(
    _delete_=True,
    type='ADMBackbone',
    arch={{_base_.adm_tiny_32px}},
    checkpoint=None,
    random_init='redraw',
    blocks='pyramid',
    pyramid_strides=(2, 4),
    # not tuned: between the demo probe's t=10 and the ADM dense configs' t=100
    timesteps=(50, ),
    noise='fixed',
    frozen=True,
    with_cp=False,
    dtype='fp32')
