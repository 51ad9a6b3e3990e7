# DifFormer head on the tiny ADM: blocks 6 (encoder, 64 x 8 x 8), 8 (64 x 8 x 8) and
# 10 (64 x 16 x 16) at t = 50, 150, one shared transformer (64 wide, 4 heads, 2 blocks).
# The head's blocks, timesteps, in_channels (64 x 2 timesteps each) and in_sizes (8, 8, 16)
# come from the backbone (DiffSSLClassifier).
_base_ = './linear_adm-tiny_1xb16-4e_folder-32px.py'
model = dict(
    backbone=dict(blocks=(6, 8, 10), timesteps=(50, 150)),
    head=dict(
        _delete_=True,
        type='DifFormerHead',
        num_classes={{_base_.num_classes}},
        pool_size=8,
        embed_dims=64,
        num_heads=4,
        num_layers=2))
