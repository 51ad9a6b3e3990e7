# The PixArt-α XL/2 512 backbone shared by the PixArt configs: a local diffusers folder
# checkpoints/PixArt-XL-2-512x512 (configs/pixart/README.md) and the empty prompt's T5
# embedding written once by tools/write_t5_embeddings.py (the backbone never loads T5);
# block 14 of 28 (1152 channels, stride 16) of the VAE latents noised to t=100, raw block
# output. PixArt-Σ: pretrained='checkpoints/PixArt-Sigma-XL-2-512-MS' and an embedding
# written with --max-length 300.
pixart_backbone = dict(
    _delete_=True,
    type='PixArtBackbone',
    pretrained='checkpoints/PixArt-XL-2-512x512',
    text=dict(type='file', path='checkpoints/PixArt-XL-2-512x512/null_t5.safetensors'),
    blocks=(14, ),
    timesteps=(100, ),
    feature='raw',
    noise='fixed',
    frozen=True,
    with_cp=False,
    dtype='fp32')
