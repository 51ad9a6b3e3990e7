# Stage two on CIFAR-10: mmpretrain's CIFAR ResNet-18 recipe (SGD lr 0.1, 200 epochs) from the
# distilled student of repfusion-learned-t_adm-cifar10_resnet18-cifar_1xb128-200e_cifar10.py,
# with its [-1, 1] input normalisation.
_base_ = [
    'mmpretrain::_base_/models/resnet18_cifar.py',
    '../_base_/datasets/cifar10_diffssl-32px.py',
    'mmpretrain::_base_/schedules/cifar10_bs128.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(backbone=dict(init_cfg=dict(
    type='Pretrained', prefix='student.',
    checkpoint='work_dirs/repfusion-learned-t_adm-cifar10_resnet18-cifar_1xb128-200e_cifar10/'
    'epoch_200.pth')))
# Stop before training if a student tensor did not come from the checkpoint (mmengine's
# Pretrained init only logs missing and mis-shaped keys).
custom_hooks = [dict(type='PretrainedInitCheckHook')]
