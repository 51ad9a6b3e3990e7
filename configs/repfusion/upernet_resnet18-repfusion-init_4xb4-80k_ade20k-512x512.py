# Stage two for segmentation: UPerNet (mmseg's recipe) on ADE20K with the distilled ResNet-18
# student of repfusion-learned-t_adm-64_resnet18_4xb32-200e_tiny-imagenet-64px.py as backbone
# (mmpretrain's ResNet, so the `student.*` keys load as they are), stages 1-4 at strides
# 4-32 (64, 128, 256, 512 channels), pixels in [-1, 1] as in distillation.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    '../_base_/datasets/ade20k_adm-512x512.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
custom_imports = dict(imports=['mmdiffssl', 'mmpretrain.models'], allow_failed_imports=False)
data_preprocessor = dict(
    mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], size=(512, 512))
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='mmpretrain.ResNet', depth=18, out_indices=(0, 1, 2, 3), _delete_=True,
        init_cfg=dict(
            type='Pretrained', prefix='student.',
            checkpoint='work_dirs/repfusion-learned-t_adm-64_resnet18_4xb32-200e_'
            'tiny-imagenet-64px/epoch_200.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512], channels=256, num_classes=150),
    auxiliary_head=dict(in_channels=256, channels=128, num_classes=150))
train_dataloader = dict(batch_size=4)
# Stop before training if a student tensor did not come from the checkpoint (mmengine's
# Pretrained init only logs missing and mis-shaped keys).
custom_hooks = [dict(type='PretrainedInitCheckHook')]
