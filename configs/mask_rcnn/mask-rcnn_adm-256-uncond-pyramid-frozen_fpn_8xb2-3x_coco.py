# As mask-rcnn_adm-256-uncond-pyramid-frozen_fpn_8xb2-1x_coco.py, 36 epochs.
_base_ = [
    '../_base_/models/mask-rcnn_adm-256-uncond-pyramid_fpn.py',
    '../_base_/datasets/coco_instance_lsj-1024.py',
    '../_base_/schedules/detection_adamw-3x.py',
    'mmdet::_base_/default_runtime.py',
]
