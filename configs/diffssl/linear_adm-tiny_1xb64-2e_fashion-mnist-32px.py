# The README's demo: a linear probe on frozen ADMBackbone features of Fashion-MNIST.
# The U-Net is a small random (re-drawn, non-degenerate) ADM until a pretrained checkpoint is
# given (configs/pretrain/). Block 8 (64 x 8 x 8) at t=10, pooled 4x4 -> 1024-d -> linear.
# Fast enough for 2 CPU cores: 2 epochs on 10,000 training images; SGD with momentum 0.9 (the
# paper's recipe has none) so that two epochs suffice.
_base_ = [
    '../_base_/models/adm-tiny_32px.py',
    '../_base_/datasets/fashion-mnist_32px.py',
    '../_base_/schedules/diffssl_sgd-steplr-28e.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(
    type='DiffSSLClassifier',
    backbone=dict(
        type='ADMBackbone',
        arch={{_base_.adm_tiny_32px}},
        blocks=(8, ),
        timesteps=(10, ),
        noise='fixed',
        frozen=True,
        random_init='redraw'),
    head=dict(type='PooledLinearHead', num_classes=10, pool_size=4))
train_dataloader = dict(dataset=dict(indices=10000))
optim_wrapper = dict(optimizer=dict(lr=0.01, momentum=0.9))
train_cfg = dict(max_epochs=2)
randomness = dict(seed=0)
