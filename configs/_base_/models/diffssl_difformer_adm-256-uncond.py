# DifFormer: blocks 19, 24, 30 at t = 90, 150, 300; the tokens of the three blocks at one t go
# through one shared transformer, the three per-t CLS outputs are concatenated -> linear.
# The head's blocks, timesteps, in_channels (block channels x 3 timesteps: 3072, 3072, 1536)
# and in_sizes (at 256 px: 8, 16, 64; the pre-layers pool to min(size, 16)) come from the
# backbone (DiffSSLClassifier).
_base_ = './diffssl_attention_adm-256-uncond.py'
model = dict(
    backbone=dict(blocks=(19, 24, 30), timesteps=(90, 150, 300)),
    head=dict(type='DifFormerHead'))  # the attention head's settings, over three blocks
