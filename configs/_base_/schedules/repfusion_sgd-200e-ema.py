# RepFusion's student schedule, both stages: mmpretrain's CIFAR schedule (SGD lr 0.1,
# momentum 0.9, weight decay 1e-4, lr x0.1 at epochs 100 and 150 of 200, batch 128) plus an
# exponential moving average of the weights, mmengine's EMAHook with momentum 0.001 (mmengine's
# convention: ema = (1 - momentum) * ema + momentum * weights, i.e. decay 0.999 per iteration;
# the reference's mmcv EMAHook uses the same formula). Validation and test swap the EMA weights
# in; a checkpoint's `state_dict` holds the EMA weights (`ema_state_dict` the raw ones, prefix
# `module.`), so stage two's `Pretrained` init (prefix `student.`) starts from the EMA student.
# Configs add `{{_base_.ema_hook}}` to their custom_hooks.
_base_ = 'mmpretrain::_base_/schedules/cifar10_bs128.py'
ema_hook = dict(type='EMAHook', momentum=0.001, update_buffers=False, priority='ABOVE_NORMAL')
