# Linear probe on frozen DiT-XL/2 256, block 14 (1152 x 16 x 16 at 256 px): the diffssl linear
# probe (pool 2 x 2, linear: 4608-d; in_channels from the backbone) at t=100, null class.
_base_ = ['./diffssl_linear_adm-256-uncond.py', './dit-xl-2-256_b14.py']
model = dict(backbone={{_base_.dit_backbone}})
