# The dense-prediction backbone shared by the SD Mask R-CNN and UPerNet bases: Stable
# Diffusion 1.5 from a local diffusers folder (configs/sd/README.md says how to get one; a
# single original checkpoint works too: pretrained='checkpoints/v1-5-pruned-emaonly.safetensors',
# config='checkpoints/stable-diffusion-v1-5-configs'). The decoder pyramid: blocks='pyramid' =
# up_blocks.3, 2, 1, 0 (blocks 9, 8, 7, 6) before their upsamplers, at strides 8, 16, 32, 64
# of the image with 320, 640, 1280, 1280 channels, of the VAE latents (x 0.18215) noised to
# t=100, conditioned on the null prompt (CLIP, encoded once at construction).
# `_delete_` drops the ResNet settings of the mmdet/mmseg base the model dict merges into.
sd_pyramid_backbone = dict(
    _delete_=True,
    type='SDBackbone',
    pretrained='checkpoints/stable-diffusion-v1-5',
    blocks='pyramid',
    pyramid_strides=(8, 16, 32, 64),
    timesteps=(100, ),
    text=dict(type='null'),
    # 'fixed': a latent noise field that depends only on the position (reproducible
    # evaluation, independent of batch and GPU count); 'fresh' draws new noise every step
    noise='fixed',
    stride4=None,
    frozen=True,
    with_cp=False,
    # 'bf16' autocast (VAE and U-Net) roughly halves time and memory on recent GPUs
    dtype='fp32')
