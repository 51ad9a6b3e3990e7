# Stage one on Tiny-ImageNet (64x64): the unconditional 64x64 ADM of
# configs/pretrain/ddpm_adm-64-uncond_8xb32-300e_imagenet-folder-64px.py (its EMA weights,
# prefix `unet.`) read at block 24 (576 x 16 x 16, the last decoder block at stride 4) on the
# clean image, distilled into mmpretrain's ResNet-18 (last stage, 512 x 2 x 2). Policy over
# t = 0, 50, ..., 950; RepFusion's schedule (SGD lr 0.1, 200 epochs, entropy bonus to 0 by 100).
_base_ = [
    '../_base_/models/repfusion_adm-tiny_resnet18-cifar.py',
    '../_base_/datasets/tiny-imagenet_diffssl-64px.py',
    'mmpretrain::_base_/schedules/cifar10_bs128.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(
    teacher=dict(
        arch=dict(preset='adm-64-cond', class_cond=False, _delete_=True),
        checkpoint='work_dirs/ddpm_adm-64-uncond_8xb32-300e_imagenet-folder-64px/epoch_300.pth',
        checkpoint_prefix='unet.',
        blocks=(24, ),
        random_init='guided'),
    student=dict(type='ResNet', depth=18, out_indices=(3, ), _delete_=True),
    num_classes=200)
custom_hooks = [dict(type='TimestepPolicyHook', decay_end=100)]
# A distiller predicts nothing: the student is evaluated after stage two.
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
