# ViTDet-style Mask R-CNN on one frozen adm-256-uncond block: block 24 (1024 ch, stride 16,
# t=100) -> DiffSimpleFPN (strides 4-32, + 64 for the RPN), COCO 1024 x 1024, 12 epochs,
# 8 GPUs x 2 images. The U-Net stops after block 24 (cheaper than the pyramid's block 30).
_base_ = [
    '../_base_/models/mask-rcnn_adm-256-uncond-b24_simple-fpn.py',
    '../_base_/datasets/coco_instance_lsj-1024.py',
    '../_base_/schedules/detection_adamw-1x.py',
    'mmdet::_base_/default_runtime.py',
]
