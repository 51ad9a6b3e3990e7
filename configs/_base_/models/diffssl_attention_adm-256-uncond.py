# The paper's attention head on block 24: pre-layer (pool to 16, LayerNorm over C,H,W, 1x1 conv
# to 1024), zero-init CLS, 2 pre-norm ViT blocks (1024 wide, 8 heads, MLP ratio 4), linear.
# in_channels (1024: block 24 x 1 timestep), in_sizes (16: block 24 at 256 px) and
# num_timesteps (1) come from the backbone (DiffSSLClassifier).
_base_ = './diffssl_adm-256-uncond.py'
model = dict(
    head=dict(
        type='AttentionPoolHead',
        num_classes=1000,
        embed_dims=1024,
        num_heads=8,
        num_layers=2,
        mlp_ratio=4.0,
        pool_size=16,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
