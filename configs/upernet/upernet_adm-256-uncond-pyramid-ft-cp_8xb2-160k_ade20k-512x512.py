# As upernet_adm-256-uncond-pyramid-ft-cp_8xb2-80k_ade20k-512x512.py, 160k iterations.
_base_ = './upernet_adm-256-uncond-pyramid-frozen_8xb2-160k_ade20k-512x512.py'

model = dict(backbone=dict(frozen=False, with_cp=True))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
# No `find_unused_parameters`: the U-Net is pruned after the deepest block read, so every
# parameter that requires grad gets a gradient (tests/test_dense/test_dense_ddp.py).
