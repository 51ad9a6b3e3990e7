# Stage two on Tiny-ImageNet: mmpretrain's ResNet-18 classifier (200 classes) from the EMA
# student of repfusion-learned-t_adm-64_resnet18_4xb32-200e_tiny-imagenet-64px.py, with the
# stage-one schedule and EMA (momentum 0.001, evaluated).
_base_ = [
    'mmpretrain::_base_/models/resnet18.py',
    '../_base_/datasets/tiny-imagenet_diffssl-64px.py',
    '../_base_/schedules/repfusion_sgd-200e-ema.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(
    backbone=dict(init_cfg=dict(
        type='Pretrained', prefix='student.',
        checkpoint='work_dirs/repfusion-learned-t_adm-64_resnet18_4xb32-200e_tiny-imagenet-64px/'
        'epoch_200.pth')),
    head=dict(num_classes=200, topk=(1, 5)))
# Stop before training if a student tensor did not come from the checkpoint (mmengine's
# Pretrained init only logs missing and mis-shaped keys).
custom_hooks = [dict(type='PretrainedInitCheckHook'), {{_base_.ema_hook}}]
