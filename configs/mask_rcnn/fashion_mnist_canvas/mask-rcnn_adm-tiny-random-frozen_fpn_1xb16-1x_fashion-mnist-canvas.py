# Mask R-CNN + FPN on a frozen, randomly initialised (re-drawn) small ADM U-Net: the floor for
# the pretrained variant (./mask-rcnn_adm-tiny-ddpm-frozen_fpn_1xb16-1x_fashion-mnist-canvas.py,
# same everything but the U-Net weights). Fashion-MNIST canvases (10 classes), 12 epochs,
# 1 GPU x 16 images. Only the FPN and the heads train.
_base_ = [
    '../../_base_/models/mask-rcnn_adm-tiny_fpn.py',
    '../../_base_/datasets/fashion-mnist-canvas_instance.py',
    '../../_base_/schedules/detection_adamw-1x.py',
    'mmdet::_base_/default_runtime.py',
]
