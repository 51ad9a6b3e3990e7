# Stage one on CIFAR-10 with RepFusion's own teacher: the diffusers DDPM CIFAR-10 model
# (UNet2DModel, a local diffusers folder: checkpoints/ddpm-cifar10-32 with unet/ and
# scheduler/, or the folder itself; never downloaded) through DiffusersUNetBackbone, read at
# block 7 (up_blocks.1, 256 x 8 x 8) on the clean image. Same recipe as the ADM-teacher
# config; `python tools/print_blocks.py` lists ADM blocks, configs/sd/README.md the diffusers
# numbering. The stage-two config is resnet18-cifar_repfusion-init_1xb128-200e_cifar10.py.
_base_ = './repfusion-learned-t_adm-cifar10_resnet18-cifar_1xb128-200e_cifar10.py'
model = dict(
    teacher=dict(type='DiffusersUNetBackbone', pretrained='checkpoints/ddpm-cifar10-32',
                 blocks=(7, ), timesteps=(50, ), noise='none', frozen=True, _delete_=True),
    timestep_policy=dict(candidates=list(range(0, 1000, 50))))
