# ImageNet-1k DifFormer: blocks 19, 24, 30 x t = 90, 150, 300 of frozen adm-256-uncond, one
# shared transformer (lr 5e-2, plain SGD, StepLR(7, 0.1), 28 epochs, total batch 128).
_base_ = [
    '../_base_/models/diffssl_difformer_adm-256-uncond.py',
    '../_base_/datasets/imagenet_diffssl-256px.py',
    '../_base_/schedules/diffssl_sgd-steplr-28e.py',
    '../_base_/default_runtime_cls.py',
]
optim_wrapper = dict(optimizer=dict(lr=5e-2))
train_cfg = dict(val_interval=7)
