# The reference CIFAR-10 run of repfusion-learned-t_ddpm-cifar10_resnet18-cifar_1xb128-200e_cifar10.py
# with our two policy options: 20 candidate timesteps (t = 0, 50, ..., 950) instead of all
# 1000, and a moving-average reward baseline (momentum 0.9) subtracted in REINFORCE.
_base_ = './repfusion-learned-t_ddpm-cifar10_resnet18-cifar_1xb128-200e_cifar10.py'
model = dict(timestep_policy=dict(candidates=list(range(0, 1000, 50)), baseline_momentum=0.9))
