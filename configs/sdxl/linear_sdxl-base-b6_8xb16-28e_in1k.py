# ImageNet-1k linear probe on frozen SDXL base, block 6 (up_blocks.1, 640 x 16 x 16 at 256 px),
# t = 100, null prompt, 'fresh' noise, bf16 (the VAE in bf16 too); the diffssl linear recipe
# on the paper's 256 px pipeline.
_base_ = [
    '../_base_/models/linear_sdxl-base-b6.py',
    '../_base_/datasets/imagenet_diffssl-256px.py',
    '../_base_/schedules/diffssl_sgd-steplr-28e.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(backbone=dict(blocks=(6, ), stride4=None, noise='fresh', dtype='bf16',
                           vae_dtype='bf16'))
train_cfg = dict(val_interval=7)
