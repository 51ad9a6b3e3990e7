# Mask R-CNN + FPN fine-tuning the whole adm-256-uncond U-Net prefix (blocks 1-30; the
# pyramid reads 30, 27, 24, 21 at t=100), COCO 1024 x 1024, 12 epochs, 8 GPUs x 2 images.
# The U-Net trains at 0.1x the lr of the FPN and heads, and every U-Net block is
# gradient-checkpointed (with_cp=True: its activations are recomputed in the backward pass).
_base_ = './mask-rcnn_adm-256-uncond-pyramid-frozen_fpn_8xb2-1x_coco.py'

model = dict(backbone=dict(frozen=False, with_cp=True))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
# No `find_unused_parameters`: the U-Net is pruned after the deepest block read, so every
# parameter that requires grad gets a gradient (tests/test_dense/test_dense_ddp.py).
