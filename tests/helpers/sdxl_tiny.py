"""A tiny random SDXL in diffusers' folder layout (CPU tests).

:data:`TINY_SDXL_UNET` has SDXL's block types (a plain down block, two cross-attention down
blocks, the last without downsampler; mirrored up blocks), ``addition_embed_type='text_time'``
with 8-wide time ids, and a 32-wide context (two 16-wide CLIP encoders); on
:data:`~helpers.sd_tiny.TINY_VAE` a 64 x 64 image gives 8 x 8 latents and the pyramid has
strides 8, 16, 32. :func:`write_tiny_sdxl` writes ``unet/``, ``vae/``, ``scheduler/``,
``text_encoder{,_2}/`` and ``tokenizer{,_2}/`` (``refiner=True``: the refiner's addition
width and ``requires_aesthetics_score``).
"""
import json
import os.path as osp

import torch

from helpers.sd_tiny import SD_SCHEDULER, TEXT_DIM, TINY_VAE, perturb_, tiny_text_encoder

TIME_DIM = 8
TINY_SDXL_UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(16, 16, 32), norm_num_groups=8, cross_attention_dim=2 * TEXT_DIM,
    attention_head_dim=(2, 2, 4), transformer_layers_per_block=(1, 1, 2),
    use_linear_projection=True, addition_embed_type='text_time',
    addition_time_embed_dim=TIME_DIM, projection_class_embeddings_input_dim=TEXT_DIM + 6 * TIME_DIM,
    down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'),
    up_block_types=('CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'))


def write_tiny_sdxl(folder, seed=0, refiner=False):
    """A tiny SDXL folder; returns the diffusers components (unet, vae, encoders...)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection
    torch.manual_seed(seed)
    config = dict(TINY_SDXL_UNET)
    if refiner:
        config['projection_class_embeddings_input_dim'] = TEXT_DIM + 5 * TIME_DIM
    unet = perturb_(UNet2DConditionModel(**config), seed, scale=0.05).eval()
    vae = perturb_(AutoencoderKL(**dict(TINY_VAE, scaling_factor=0.13025)), seed + 1,
                   scale=0.05).eval()
    unet.save_pretrained(osp.join(folder, 'unet'))
    vae.save_pretrained(osp.join(folder, 'vae'))
    DDPMScheduler(**SD_SCHEDULER).save_pretrained(osp.join(folder, 'scheduler'))
    tokenizer, encoder = tiny_text_encoder(folder, seed)
    tokenizer.save_pretrained(osp.join(folder, 'tokenizer_2'))
    base = encoder.config.to_dict()
    base.pop('architectures', None)
    torch.manual_seed(seed + 3)
    encoder_2 = perturb_(CLIPTextModelWithProjection(
        CLIPTextConfig(**dict(base, projection_dim=TEXT_DIM))), seed + 4, scale=0.05).eval()
    encoder_2.save_pretrained(osp.join(folder, 'text_encoder_2'))
    with open(osp.join(folder, 'model_index.json'), 'w') as f:
        json.dump({'_class_name': 'StableDiffusionXLPipeline',
                   'requires_aesthetics_score': refiner}, f)
    return dict(unet=unet, vae=vae, text_encoder=encoder, tokenizer=tokenizer,
                text_encoder_2=encoder_2, tokenizer_2=tokenizer)
