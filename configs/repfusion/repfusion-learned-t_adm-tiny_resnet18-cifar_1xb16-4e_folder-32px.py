# Stage one on your own image folder (4 classes, 32x32): distil the tiny ADM teacher into a
# CIFAR ResNet-18 with a learned timestep policy. What the end-to-end tests run on a
# generated folder; the student's weights go to stage two through
# resnet18-cifar_repfusion-init_1xb16-4e_folder-32px.py.
_base_ = [
    '../_base_/models/repfusion_adm-tiny_resnet18-cifar.py',
    '../_base_/datasets/image-folder_32px.py',
    'mmpretrain::_base_/schedules/cifar10_bs128.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(num_classes=4)
optim_wrapper = dict(optimizer=dict(lr=0.05))
train_cfg = dict(by_epoch=True, max_epochs=4, val_interval=100)
param_scheduler = dict(type='CosineAnnealingLR', T_max=4, by_epoch=True, _delete_=True)
# RepFusion decays the entropy bonus 0.1 -> 0 by epoch 100 of 200; here by the last epoch.
custom_hooks = [dict(type='TimestepPolicyHook', decay_end=4)]
default_hooks = dict(checkpoint=dict(interval=4), logger=dict(interval=1))
# A distiller predicts nothing: the student is evaluated after stage two.
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
randomness = dict(seed=0)
