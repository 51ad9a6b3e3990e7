# mmpretrain's stock CIFAR ResNet-18 model and schedule on Fashion-MNIST: a baseline, and
# the config the foundation tests train and test through tools/train.py and tools/test.py.
_base_ = [
    'mmpretrain::_base_/models/resnet18_cifar.py',
    '../_base_/datasets/fashion-mnist_32px.py',
    'mmpretrain::_base_/schedules/cifar10_bs128.py',
    '../_base_/default_runtime_cls.py',
]
train_cfg = dict(max_epochs=2)
