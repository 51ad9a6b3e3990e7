# As mask-rcnn_adm-256-uncond-b24-frozen_simple-fpn_8xb2-1x_coco.py, fine-tuning U-Net
# blocks 1-24 at 0.1x lr with per-block gradient checkpointing.
_base_ = './mask-rcnn_adm-256-uncond-b24-frozen_simple-fpn_8xb2-1x_coco.py'

model = dict(backbone=dict(frozen=False, with_cp=True))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
