# As mask-rcnn_adm-256-uncond-pyramid-frozen_fpn_8xb2-1x_coco.py in bfloat16 mixed
# precision: the U-Net runs under bf16 autocast (GroupNorm in fp32), the FPN and heads under
# mmengine's AmpOptimWrapper (bf16 autocast; fp32 master weights). Needs a GPU.
_base_ = './mask-rcnn_adm-256-uncond-pyramid-frozen_fpn_8xb2-1x_coco.py'

model = dict(backbone=dict(dtype='bf16'))
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16')
