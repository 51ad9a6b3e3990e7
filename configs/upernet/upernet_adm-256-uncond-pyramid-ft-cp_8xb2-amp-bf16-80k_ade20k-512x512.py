# As upernet_adm-256-uncond-pyramid-ft-cp_8xb2-80k_ade20k-512x512.py in bfloat16 mixed
# precision (U-Net under bf16 autocast with GroupNorm in fp32, heads under AmpOptimWrapper).
# Needs a GPU.
_base_ = './upernet_adm-256-uncond-pyramid-ft-cp_8xb2-80k_ade20k-512x512.py'

model = dict(backbone=dict(dtype='bf16'))
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16')
