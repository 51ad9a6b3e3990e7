# DDPM pretraining of the small 32x32 ADM on Fashion-MNIST (labels unused), guided-diffusion's
# objective (epsilon prediction; add learn_sigma=True for the hybrid loss), EMA through
# mmengine's EMAHook (ema rate 0.9999 = momentum 1e-4). Checkpoints load into ADMBackbone with
# checkpoint_prefix='unet.' (EMA weights) - see configs/pretrain/README.md.
_base_ = [
    '../_base_/models/adm-tiny_32px.py',
    '../_base_/datasets/fashion-mnist_32px.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(type='DDPMPretrainer', arch={{_base_.adm_tiny_32px}}, timestep_sampler='uniform')
data_preprocessor = dict(type='mmpretrain.ClsDataPreprocessor')
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.0))
param_scheduler = []
train_cfg = dict(by_epoch=True, max_epochs=5)
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None
custom_hooks = [dict(type='EMAHook', momentum=1e-4, update_buffers=False, priority='ABOVE_NORMAL')]
randomness = dict(seed=0)
