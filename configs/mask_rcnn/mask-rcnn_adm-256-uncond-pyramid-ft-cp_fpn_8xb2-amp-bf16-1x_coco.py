# As mask-rcnn_adm-256-uncond-pyramid-ft-cp_fpn_8xb2-1x_coco.py in bfloat16 mixed precision
# (U-Net under bf16 autocast with GroupNorm in fp32, the rest under AmpOptimWrapper; the
# optimizer keeps fp32 weights). Needs a GPU. The first setting to try for fine-tuning at
# 1024 x 1024 on one 80 GB GPU.
_base_ = './mask-rcnn_adm-256-uncond-pyramid-ft-cp_fpn_8xb2-1x_coco.py'

model = dict(backbone=dict(dtype='bf16'))
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16')
