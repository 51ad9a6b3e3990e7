# Stage one on CIFAR-10 as RepFusion's reference does it: its teacher, the diffusers DDPM
# CIFAR-10 model (UNet2DModel, a local diffusers folder: checkpoints/ddpm-cifar10-32 with unet/
# and scheduler/, or the folder itself; never downloaded) through DiffusersUNetBackbone, on the
# clean image. The distilled tensor is the reference's: the tap `mid_block.resnets.1.conv2`
# (the second mid-block ResNet's residual branch, 256 x 4 x 4), so the teacher runs up to its
# mid block only. The policy's softmax is over all 1000 timesteps (stride 1). The rest of the
# recipe (EMA, auxiliary MLP, plain REINFORCE, entropy schedule) is the ADM-teacher config's;
# `python tools/print_blocks.py checkpoints/ddpm-cifar10-32 --taps mid_block` lists the
# tappable modules. The stage-two config is resnet18-cifar_repfusion-init_1xb64-200e_cifar10.py.
_base_ = './repfusion-learned-t_adm-cifar10_resnet18-cifar_1xb128-200e_cifar10.py'
model = dict(
    teacher=dict(type='DiffusersUNetBackbone', pretrained='checkpoints/ddpm-cifar10-32',
                 timesteps=(50, ), noise='none', frozen=True, _delete_=True),
    teacher_tap='mid_block.resnets.1.conv2',
    timestep_policy=dict(candidates=None, stride=1))
