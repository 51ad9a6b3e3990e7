# Linear probe on frozen Stable Diffusion 1.5 (local diffusers folder
# checkpoints/stable-diffusion-v1-5): the diffssl linear probe (pool 2 x 2, linear) on block 7
# = up_blocks.1 before its upsampler (1280 channels, stride 32: 8 x 8 at 256 px -> 5120-d) of
# the latents noised to t=100 with 'fresh' noise, null prompt, bf16 autocast.
_base_ = './diffssl_linear_adm-256-uncond.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SDBackbone',
        pretrained='checkpoints/stable-diffusion-v1-5',
        blocks=(7, ),
        timesteps=(100, ),
        text=dict(type='null'),
        noise='fresh',
        fuse_timesteps='concat',
        frozen=True,
        dtype='bf16'))
