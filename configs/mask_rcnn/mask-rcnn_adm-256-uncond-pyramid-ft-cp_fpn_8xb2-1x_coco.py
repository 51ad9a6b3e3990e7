# Mask R-CNN + FPN fine-tuning the whole adm-256-uncond U-Net prefix (blocks 1-30; the
# pyramid reads 30, 27, 24, 21 at t=100), COCO 1024 x 1024, 12 epochs, 8 GPUs x 2 images.
# The U-Net trains at 0.1x the lr of the FPN and heads, and every U-Net block is
# gradient-checkpointed (with_cp=True: its activations are recomputed in the backward pass).
_base_ = './mask-rcnn_adm-256-uncond-pyramid-frozen_fpn_8xb2-1x_coco.py'

model = dict(backbone=dict(frozen=False, with_cp=True))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
# U-Net blocks after the deepest one read (and its output layer) require grad but get none:
# DDP must look for unused parameters (or it stops at the second iteration).
find_unused_parameters = True
