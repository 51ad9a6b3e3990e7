# ImageNet-1k linear probe on frozen DiT-XL/2 256, block 14, t = 100, null class, 'fresh' noise,
# bf16; the diffssl linear recipe (SGD lr 1e-2, no momentum or weight decay, StepLR(7, 0.1),
# 28 epochs, total batch 128) on the paper's 256 px pipeline. DiT was trained on ImageNet-1k
# with labels: its features are not self-supervised for this dataset.
_base_ = [
    '../_base_/models/linear_dit-xl-2-256-b14.py',
    '../_base_/datasets/imagenet_diffssl-256px.py',
    '../_base_/schedules/diffssl_sgd-steplr-28e.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(backbone=dict(noise='fresh', dtype='bf16'))
train_cfg = dict(val_interval=7)
