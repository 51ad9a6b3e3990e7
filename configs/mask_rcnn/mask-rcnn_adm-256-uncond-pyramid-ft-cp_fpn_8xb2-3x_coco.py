# As mask-rcnn_adm-256-uncond-pyramid-ft-cp_fpn_8xb2-1x_coco.py, 36 epochs.
_base_ = './mask-rcnn_adm-256-uncond-pyramid-frozen_fpn_8xb2-3x_coco.py'

model = dict(backbone=dict(frozen=False, with_cp=True))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
