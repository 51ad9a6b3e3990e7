# Stage one on Tiny-ImageNet (64x64) as RepFusion's reference does it: OpenAI's
# class-conditional 64x64 ADM (`64x64_diffusion.pt`, preset adm-64-cond) fed each image's
# ground-truth class (Tiny-ImageNet's wnids mapped to ImageNet-1k indices, the order the model
# was trained with), read on the clean image at the reference's tensor: the tap
# `middle_block.2.out_layers.3` (the last middle ResBlock's residual branch, 768 x 8 x 8),
# distilled into mmpretrain's ResNet-18 (last stage, 512 x 2 x 2). Policy over all 1000
# timesteps, no entropy bonus (the reference's 0.0 for Tiny-ImageNet), plain REINFORCE;
# auxiliary MLP C -> C -> C -> 200; the student schedule with EMA of
# ../_base_/schedules/repfusion_sgd-200e-ema.py.
_base_ = [
    '../_base_/models/repfusion_adm-tiny_resnet18-cifar.py',
    '../_base_/datasets/tiny-imagenet_diffssl-64px.py',
    '../_base_/schedules/repfusion_sgd-200e-ema.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(
    teacher=dict(
        arch='adm-64-cond',
        checkpoint='checkpoints/64x64_diffusion.pt',
        class_label='per_image',
        random_init='guided'),
    teacher_tap='middle_block.2.out_layers.3',
    teacher_class_wnids='data/tiny-imagenet-200/wnids.txt',
    student=dict(type='ResNet', depth=18, out_indices=(3, ), _delete_=True),
    timestep_policy=dict(candidates=None, stride=1, entropy_coef=0.0, baseline_momentum=None),
    aux_hidden_layers=2,
    num_classes=200)
# The bonus is 0 throughout; the hook still writes the policy's distribution each epoch.
custom_hooks = [dict(type='TimestepPolicyHook', decay_end=100), {{_base_.ema_hook}}]
# A distiller predicts nothing: the student is evaluated after stage two.
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
