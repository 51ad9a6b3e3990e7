# As mask-rcnn_adm-256-uncond-b24-ft-cp_simple-fpn_8xb2-1x_coco.py, 36 epochs.
_base_ = './mask-rcnn_adm-256-uncond-b24-frozen_simple-fpn_8xb2-3x_coco.py'

model = dict(backbone=dict(frozen=False, with_cp=True))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
# U-Net blocks after the deepest one read (and its output layer) require grad but get none:
# DDP must look for unused parameters (or it stops at the second iteration).
find_unused_parameters = True
