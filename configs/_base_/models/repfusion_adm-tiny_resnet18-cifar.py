# RepFusion on 32x32 images: the tiny ADM (configs/_base_/models/adm-tiny_32px.py) as frozen
# teacher, read at block 8 (64 x 8 x 8) on the clean image (noise='none', RepFusion's clean
# variant), distilled into mmpretrain's CIFAR ResNet-18 (last stage, 512 x 4 x 4) through a
# 1x1 projection and pooled MSE. A learned policy picks t among 0, 50, ..., 950 per image.
# The teacher is a random re-drawn U-Net until a checkpoint is given (configs/pretrain/):
#   --cfg-options model.teacher.checkpoint=work_dirs/ddpm/epoch_5.pth \
#                 model.teacher.checkpoint_prefix=unet.
_base_ = './adm-tiny_32px.py'
model = dict(
    type='RepFusionDistiller',
    teacher=dict(
        type='ADMBackbone',
        arch={{_base_.adm_tiny_32px}},
        blocks=(8, ),
        timesteps=(50, ),
        noise='none',
        frozen=True,
        random_init='redraw'),
    student=dict(type='ResNet_CIFAR', depth=18, out_indices=(3, )),
    timestep_policy=dict(
        type='LearnedTimestepPolicy', candidates=list(range(0, 1000, 50)), entropy_coef=0.1),
    distill_loss='pooled_mse',
    num_classes=10)
