# DifFormer head on the tiny ADM: blocks 6 (encoder, 64 x 8 x 8), 8 (64 x 8 x 8) and
# 10 (64 x 16 x 16) at t = 50, 150, one shared transformer (64 wide, 4 heads, 2 blocks).
_base_ = './linear_adm-tiny_1xb16-4e_folder-32px.py'
difformer_blocks = (6, 8, 10)
difformer_timesteps = (50, 150)
model = dict(
    backbone=dict(blocks=difformer_blocks, timesteps=difformer_timesteps),
    head=dict(
        _delete_=True,
        type='DifFormerHead',
        num_classes={{_base_.num_classes}},
        blocks=difformer_blocks,
        timesteps=difformer_timesteps,
        in_channels=(128, 128, 128),
        in_sizes=(8, 8, 16),
        pool_size=8,
        embed_dims=64,
        num_heads=4,
        num_layers=2))
