# Fashion-MNIST as 32x32 RGB, normalised to [-1, 1] (mean = std = 127.5), what the
# diffusion U-Nets take. Data: `python tools/dataset_converters/fashion_mnist.py
# data/fashion_mnist` (from Debian's dataset-fashion-mnist package).
dataset_type = 'FashionMNIST'
data_root = 'data/fashion_mnist'
data_preprocessor = dict(
    num_classes=10, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True)
pipeline = [
    dict(type='Resize', scale=(32, 32)),
    dict(type='GrayToRGB'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    dataset=dict(type=dataset_type, data_root=data_root, split='train', download=False,
                 pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=256,
    num_workers=2,
    # mmpretrain 1.2.0's MNIST reads the test files only when test_mode=True (`split` alone
    # still loads the 60,000 training images).
    dataset=dict(type=dataset_type, data_root=data_root, split='test', test_mode=True,
                 download=False, pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
