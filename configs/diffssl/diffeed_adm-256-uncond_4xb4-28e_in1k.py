# ImageNet-1k DifFeed: feedback 21, 24, 27, 30, 33, 36 -> 38 - b, attention head on pass-2
# block 24, t = 150 (lr 1e-2, plain SGD, StepLR(7, 0.1), 28 epochs, total batch 16 = 4 GPUs x 4
# as in the paper's script). Trains the feedback layers and the head; the U-Net stays frozen.
_base_ = [
    '../_base_/models/diffssl_diffeed_adm-256-uncond.py',
    '../_base_/datasets/imagenet_diffssl-256px.py',
    '../_base_/schedules/diffssl_sgd-steplr-28e.py',
    '../_base_/default_runtime_cls.py',
]
train_dataloader = dict(batch_size=4)
val_dataloader = dict(batch_size=8)
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=1e-2))
auto_scale_lr = dict(base_batch_size=16)
train_cfg = dict(val_interval=7)
