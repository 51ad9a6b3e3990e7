# The DiT-XL/2 256 backbone shared by the DiT configs: a local diffusers folder
# checkpoints/DiT-XL-2-256 (configs/dit/README.md; the original DiT-XL-2-256x256.pt works too:
# pretrained='checkpoints/DiT-XL-2-256x256.pt', config='checkpoints/DiT-XL-2-256'), block 14
# of 28 (the middle block, 1152 channels, stride 16: 16 x 16 at 256 px) of the VAE latents
# noised to t=100, null class (unconditional features), the block's raw output tokens as a
# map (feature='modulated' applies block 15's adaLN). `_delete_` drops the settings of the
# base the model dict merges into.
dit_backbone = dict(
    _delete_=True,
    type='DiTBackbone',
    pretrained='checkpoints/DiT-XL-2-256',
    blocks=(14, ),
    timesteps=(100, ),
    class_label='null',
    feature='raw',
    noise='fixed',
    frozen=True,
    with_cp=False,
    dtype='fp32')
