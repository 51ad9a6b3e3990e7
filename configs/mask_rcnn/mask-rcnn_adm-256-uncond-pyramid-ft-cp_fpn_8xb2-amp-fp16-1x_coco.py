# As mask-rcnn_adm-256-uncond-pyramid-ft-cp_fpn_8xb2-1x_coco.py in float16 mixed precision
# (the precision OpenAI trained the U-Net in): U-Net under fp16 autocast (GroupNorm in
# fp32), the rest under AmpOptimWrapper with dynamic loss scaling. For GPUs without bf16.
_base_ = './mask-rcnn_adm-256-uncond-pyramid-ft-cp_fpn_8xb2-1x_coco.py'

model = dict(backbone=dict(dtype='fp16'))
optim_wrapper = dict(type='AmpOptimWrapper', dtype='float16', loss_scale='dynamic')
