# ImageNet-1k linear probe on frozen adm-256-uncond block 24, t = 150 (the paper's GD(L) recipe:
# SGD lr 1e-2, no momentum / weight decay, StepLR(7, 0.1), 28 epochs, total batch 128).
_base_ = [
    '../_base_/models/diffssl_linear_adm-256-uncond.py',
    '../_base_/datasets/imagenet_diffssl-256px.py',
    '../_base_/schedules/diffssl_sgd-steplr-28e.py',
    '../_base_/default_runtime_cls.py',
]
train_cfg = dict(val_interval=7)  # the paper evaluated every 7 epochs
