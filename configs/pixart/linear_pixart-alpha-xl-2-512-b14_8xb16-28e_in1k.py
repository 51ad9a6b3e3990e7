# ImageNet-1k linear probe on frozen PixArt-α XL/2 512, block 14, t = 100, the empty prompt,
# 'fresh' noise, bf16; the diffssl linear recipe on the paper's 256 px pipeline (16 x 16
# tokens; positional embeddings interpolated from the 64 x 64 training grid).
_base_ = [
    '../_base_/models/linear_pixart-alpha-xl-2-512-b14.py',
    '../_base_/datasets/imagenet_diffssl-256px.py',
    '../_base_/schedules/diffssl_sgd-steplr-28e.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(backbone=dict(noise='fresh', dtype='bf16'))
train_cfg = dict(val_interval=7)
