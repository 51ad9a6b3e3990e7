# The paper's frozen feature extractor: OpenAI's unconditional 256x256 ADM
# (256x256_diffusion_uncond.pt, flags of preset 'adm-256-uncond'; put the file in checkpoints/)
# at block 24, t = 150, fresh noise, U-Net in fp16 autocast as in the paper's code.
# DiffSSLClassifier = mmpretrain's ImageClassifier that builds the backbone first and fills the
# head's in_channels, in_sizes, num_timesteps (and DifFormer's blocks, timesteps) from it; the
# head configs leave them out (`python tools/print_blocks.py CONFIG` lists the blocks' channels
# and strides). Heads are added by the diffssl_<head>_* bases.
adm_256_uncond_backbone = dict(
    type='ADMBackbone',
    arch='adm-256-uncond',
    checkpoint='checkpoints/256x256_diffusion_uncond.pt',
    blocks=(24, ),
    timesteps=(150, ),
    noise='fresh',
    fuse_timesteps='concat',
    frozen=True,
    dtype='fp16')
model = dict(type='DiffSSLClassifier', backbone=adm_256_uncond_backbone)
