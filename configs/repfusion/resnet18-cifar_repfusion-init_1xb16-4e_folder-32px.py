# Stage two on your own image folder: mmpretrain's CIFAR ResNet-18 classifier initialised
# from the student of repfusion-learned-t_adm-tiny_resnet18-cifar_1xb16-4e_folder-32px.py
# (its `student.*` weights). Same [-1, 1] input normalisation as stage one.
_base_ = [
    'mmpretrain::_base_/models/resnet18_cifar.py',
    '../_base_/datasets/image-folder_32px.py',
    'mmpretrain::_base_/schedules/cifar10_bs128.py',
    '../_base_/default_runtime_cls.py',
]
student_checkpoint = ('work_dirs/repfusion-learned-t_adm-tiny_resnet18-cifar_1xb16-4e_'
                      'folder-32px/epoch_4.pth')
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=student_checkpoint,
                                prefix='student.')),
    head=dict(num_classes=4))
optim_wrapper = dict(optimizer=dict(lr=0.05))
train_cfg = dict(by_epoch=True, max_epochs=4, val_interval=4)
param_scheduler = dict(type='CosineAnnealingLR', T_max=4, by_epoch=True, _delete_=True)
default_hooks = dict(checkpoint=dict(interval=4))
randomness = dict(seed=0)
# Stop before training if a student tensor did not come from the checkpoint (mmengine's
# Pretrained init only logs missing and mis-shaped keys).
custom_hooks = [dict(type='PretrainedInitCheckHook')]
