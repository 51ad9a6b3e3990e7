# mmpretrain's CIFAR-10 (random crop with 4-pixel padding, flip) with pixels normalised to
# [-1, 1] (mean = std = 127.5), what the diffusion teachers take; batch 128 on one GPU.
_base_ = 'mmpretrain::_base_/datasets/cifar10_bs16.py'
data_preprocessor = dict(
    num_classes=10, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=False)
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader
