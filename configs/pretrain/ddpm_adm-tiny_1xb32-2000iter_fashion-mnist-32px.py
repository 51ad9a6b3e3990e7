# The README's main experiment (tools/pipeline.py, `make pipeline`): the 5-epoch config
# iteration-based and cut to what 2 CPU cores pretrain in about 12 minutes on a fresh idle
# machine (the pipeline runs it alone on both threads). Trains on the first 55,000 training
# images: the last 5,000 are the pipeline's held-out split. EMA momentum 0.01 (rate 0.99, a
# half-life of about 70 iterations) instead of 1e-4, which over so few iterations would keep
# mostly the initial weights. lr 1e-3: 2e-3 and 4e-3 probed no better at 300 and 600
# iterations, and the EMA weights probed 0.2 points above the raw ones at 1,200
# (configs/pretrain/README.md, "What was tried").
_base_ = ['./ddpm_adm-tiny_1xb64-5e_fashion-mnist-32px.py']
max_iters = 2000
train_dataloader = dict(
    batch_size=32,
    num_workers=0,      # the pipeline's pretraining has both cores to itself
    persistent_workers=False,
    dataset=dict(indices=55000),
    sampler=dict(type='InfiniteSampler', shuffle=True))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, _delete_=True)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
custom_hooks = [dict(type='EMAHook', momentum=0.01, update_buffers=False, priority='ABOVE_NORMAL')]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
