# The paper's linear-probe recipe: plain SGD (no momentum, no weight decay; mmpretrain's
# bases default to 0.9 and 1e-4), StepLR(7, 0.1), 28 epochs, total batch 128.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=1e-2, momentum=0.0, weight_decay=0.0))
param_scheduler = dict(type='StepLR', by_epoch=True, step_size=7, gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=28, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128)
