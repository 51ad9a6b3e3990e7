# As mask-rcnn_adm-256-uncond-b24-frozen_simple-fpn_8xb2-1x_coco.py, fine-tuning U-Net
# blocks 1-24 at 0.1x lr with per-block gradient checkpointing.
_base_ = './mask-rcnn_adm-256-uncond-b24-frozen_simple-fpn_8xb2-1x_coco.py'

model = dict(backbone=dict(frozen=False, with_cp=True))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
# No `find_unused_parameters`: the U-Net is pruned after the deepest block read, so every
# parameter that requires grad gets a gradient (tests/test_dense/test_dense_ddp.py).
