# ImageNet-1k linear probe on frozen Stable Diffusion 1.5, block 7 (up_blocks.1, 1280 x 8 x 8
# at 256 px), t = 100, null prompt, bf16; the diffssl linear recipe (SGD lr 1e-2, no momentum
# or weight decay, StepLR(7, 0.1), 28 epochs, total batch 128) on the paper's 256 px pipeline.
_base_ = [
    '../_base_/models/sd-1-5_linear.py',
    '../_base_/datasets/imagenet_diffssl-256px.py',
    '../_base_/schedules/diffssl_sgd-steplr-28e.py',
    '../_base_/default_runtime_cls.py',
]
train_cfg = dict(val_interval=7)
