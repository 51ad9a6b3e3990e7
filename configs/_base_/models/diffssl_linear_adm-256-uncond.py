# Linear probe: block 24 (1024 x 16 x 16 at 256px) pooled to 2x2 -> 4096-d -> linear
# (in_channels from the backbone).
_base_ = './diffssl_adm-256-uncond.py'
model = dict(
    head=dict(
        type='PooledLinearHead',
        num_classes=1000,
        pool_size=2,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
