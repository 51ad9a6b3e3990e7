# DifFormer: blocks 19, 24, 30 at t = 90, 150, 300; the tokens of the three blocks at one t go
# through one shared transformer, the three per-t CLS outputs are concatenated -> linear.
# `difformer_blocks` / `difformer_timesteps` feed both backbone and head (DiffSSLClassifier
# refuses a head whose order differs from the backbone's).
_base_ = './diffssl_attention_adm-256-uncond.py'
difformer_blocks = (19, 24, 30)
difformer_timesteps = (90, 150, 300)
model = dict(
    backbone=dict(blocks=difformer_blocks, timesteps=difformer_timesteps),
    head=dict(
        _delete_=True,
        type='DifFormerHead',
        num_classes=1000,
        blocks=difformer_blocks,
        timesteps=difformer_timesteps,
        # block channels x 3 timesteps: 1024 (block 19), 1024 (24), 512 (30)
        in_channels=(3072, 3072, 1536),
        in_sizes=(8, 16, 64),   # at 256x256 input; the pre-layers pool to min(size, 16)
        embed_dims=1024,
        num_heads=8,
        num_layers=2,
        mlp_ratio=4.0,
        pool_size=16,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
