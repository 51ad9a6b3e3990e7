# Stage one on CIFAR-10 with RepFusion's recipe (configs/repfusion/README.md, "Reference
# recipe"): SGD lr 0.1, 200 epochs, EMA of the weights (momentum 0.001), entropy bonus 0.1 -> 0
# by epoch 100, plain REINFORCE (no reward baseline), auxiliary MLP C -> C -> C -> 10 on the
# teacher's pooled feature. Teacher: a 32x32 ADM of improved-DDPM's CIFAR-10 shape (128
# channels, 3 res blocks, cosine schedule, 4000 steps) in guided-diffusion's key layout, e.g.
# trained with configs/pretrain/ on CIFAR-10; read at block 24 (256 x 8 x 8, the last decoder
# block at stride 4) on the clean image. Policy over t = 0, 100, ..., 3900 (40 of its 4000
# steps). Student: CIFAR ResNet-18. RepFusion's own teacher is the DDPM of
# repfusion-learned-t_ddpm-cifar10_resnet18-cifar_1xb128-200e_cifar10.py.
_base_ = [
    '../_base_/models/repfusion_adm-tiny_resnet18-cifar.py',
    '../_base_/datasets/cifar10_diffssl-32px.py',
    '../_base_/schedules/repfusion_sgd-200e-ema.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(
    teacher=dict(
        arch=dict(image_size=32, num_channels=128, num_res_blocks=3, channel_mult='1,2,2,2',
                  attention_resolutions='16,8', num_heads=4, learn_sigma=True, dropout=0.3,
                  diffusion_steps=4000, noise_schedule='cosine', _delete_=True),
        checkpoint='checkpoints/adm-cifar10-32px.pt',
        blocks=(24, ),
        random_init='guided'),
    timestep_policy=dict(candidates=list(range(0, 4000, 100)), baseline_momentum=None),
    aux_hidden_layers=2,
    num_classes=10)
custom_hooks = [dict(type='TimestepPolicyHook', decay_end=100), {{_base_.ema_hook}}]
# A distiller predicts nothing: the student is evaluated after stage two.
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
