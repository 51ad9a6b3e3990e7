# As upernet_adm-256-uncond-pyramid-frozen_8xb2-80k_ade20k-512x512.py, 160k iterations.
_base_ = [
    '../_base_/models/upernet_adm-256-uncond-pyramid.py',
    '../_base_/datasets/ade20k_adm-512x512.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/segmentation_adamw-160k.py',
]
