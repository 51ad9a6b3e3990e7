# The SDXL base dense backbone: a local diffusers folder checkpoints/stable-diffusion-xl-base-1.0
# (configs/sdxl/README.md): the VAE encoder's stride-4 feature of the clean image (stride4='vae')
# and the decoder pyramid up_blocks.2, 1, 0 (blocks 7, 6, 5, before their upsamplers) at
# strides 8, 16, 32 with 320, 640, 1280 channels, of the latents (x 0.13025) noised to t=100,
# null prompt through both CLIP encoders, time ids from the input size. The VAE runs in fp32
# (vae_dtype='bf16' halves it; fp16 overflows and is refused).
sdxl_pyramid_backbone = dict(
    _delete_=True,
    type='SDXLBackbone',
    pretrained='checkpoints/stable-diffusion-xl-base-1.0',
    blocks='pyramid',
    timesteps=(100, ),
    text=dict(type='null'),
    noise='fixed',
    stride4='vae',
    frozen=True,
    with_cp=False,
    dtype='fp32',
    vae_dtype='fp32')
