# As upernet_adm-256-uncond-pyramid-ft-cp_8xb2-80k_ade20k-512x512.py, 160k iterations.
_base_ = './upernet_adm-256-uncond-pyramid-frozen_8xb2-160k_ade20k-512x512.py'

model = dict(backbone=dict(frozen=False, with_cp=True))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
# U-Net blocks after the deepest one read (and its output layer) require grad but get none:
# DDP must look for unused parameters (or it stops at the second iteration).
find_unused_parameters = True
