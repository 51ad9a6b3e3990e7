# A small run on your own image folder (mmpretrain CustomDataset layout:
# data/image_folder/{train,val}/<class>/<image>.png, 4 classes here), images resized to 32x32, on a
# random (re-drawn, non-degenerate) tiny ADM. It is the base of the other *_adm-tiny_*_folder
# configs and what the end-to-end tests train (they point data_root at a generated folder).
# Deviation from the paper's recipe to learn in a handful of iterations: SGD momentum 0.9.
_base_ = [
    '../_base_/models/adm-tiny_32px.py',
    '../_base_/datasets/image-folder_32px.py',
    '../_base_/schedules/diffssl_sgd-steplr-28e.py',
    '../_base_/default_runtime_cls.py',
]
num_classes = 4

# Tiny ADM blocks: 1-6 encoder, 7 middle, 8-13 decoder; block 8 is 64 x 8 x 8 at 32px.
model = dict(
    type='DiffSSLClassifier',
    backbone={{_base_.adm_tiny_backbone}},
    head=dict(type='PooledLinearHead', num_classes=num_classes, pool_size=2))
optim_wrapper = dict(optimizer=dict(lr=0.02, momentum=0.9))
train_cfg = dict(max_epochs=4, val_interval=4)
default_hooks = dict(checkpoint=dict(interval=4))
randomness = dict(seed=0)
