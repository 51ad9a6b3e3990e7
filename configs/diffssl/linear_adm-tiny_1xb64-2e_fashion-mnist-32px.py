# The README's demo: a linear probe on frozen ADMBackbone features of Fashion-MNIST.
# The U-Net is a small random (re-drawn, non-degenerate) ADM; issue 8's pretraining replaces
# it with a trained one. Fast enough for 2 CPU cores: 2 epochs on 10,000 training images.
_base_ = [
    '../_base_/models/adm-tiny_32px.py',
    '../_base_/datasets/fashion-mnist_32px.py',
    '../_base_/schedules/diffssl_sgd-steplr-28e.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ADMBackbone',
        arch={{_base_.adm_tiny_32px}},
        blocks=(8, ),
        timesteps=(50, ),
        noise='fixed',
        frozen=True,
        random_init='redraw'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
train_dataloader = dict(dataset=dict(indices=10000))
optim_wrapper = dict(optimizer=dict(lr=0.1))
train_cfg = dict(max_epochs=2)
randomness = dict(seed=0)
