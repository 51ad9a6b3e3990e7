# Stage two on CIFAR-10 as RepFusion's reference does it: mmpretrain's CIFAR ResNet-18 from the
# EMA student of repfusion-learned-t_ddpm-cifar10_resnet18-cifar_1xb128-200e_cifar10.py (its
# checkpoint's `state_dict` holds the EMA weights), SGD lr 0.1 with Nesterov momentum at batch
# 64, 200 epochs, EMA (momentum 0.001) evaluated; [-1, 1] input normalisation as in stage one.
_base_ = [
    'mmpretrain::_base_/models/resnet18_cifar.py',
    '../_base_/datasets/cifar10_diffssl-32px.py',
    '../_base_/schedules/repfusion_sgd-200e-ema.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(backbone=dict(init_cfg=dict(
    type='Pretrained', prefix='student.',
    checkpoint='work_dirs/repfusion-learned-t_ddpm-cifar10_resnet18-cifar_1xb128-200e_cifar10/'
    'epoch_200.pth')))
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(optimizer=dict(nesterov=True))
# Stop before training if a student tensor did not come from the checkpoint (mmengine's
# Pretrained init only logs missing and mis-shaped keys).
custom_hooks = [dict(type='PretrainedInitCheckHook'), {{_base_.ema_hook}}]
