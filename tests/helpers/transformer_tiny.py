"""Tiny random latent diffusion transformers in diffusers' folder layout (CPU tests).

- :data:`TINY_DIT`: a ``DiTTransformer2DModel`` config (4 blocks, width 16 = 2 heads of 8,
  patch 2, 10 classes) on :data:`~helpers.sd_tiny.TINY_VAE` latents (downsampling 8): a
  64 x 64 image gives 8 x 8 latents and 4 x 4 tokens (stride 16, as DiT-XL/2).
- :func:`write_tiny_dit`: such a model as a folder (``transformer/`` whose ``config.json``
  names ``Transformer2DModel`` as the hub's DiT folders do, ``vae/``, ``scheduler/``).
- :data:`TINY_PIXART`, :func:`write_tiny_pixart`: a ``PixArtTransformer2DModel`` of width
  24 (the size embedding needs a multiple of 3) with 12-wide "T5" captions (``sigma=True``: without the size conditioning, as
  PixArt-Σ), and :func:`write_text_file`: random caption embeddings with a padding mask.
"""
import json
import os.path as osp

import torch

from helpers.sd_tiny import TINY_VAE, perturb_

TINY_DIT = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                num_layers=4, sample_size=8, patch_size=2, num_embeds_ada_norm=10,
                norm_type='ada_norm_zero')
TINY_PIXART = dict(num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=8,
                   num_layers=4, cross_attention_dim=24, sample_size=8, patch_size=2,
                   caption_channels=12, num_embeds_ada_norm=1000, norm_type='ada_norm_single',
                   norm_elementwise_affine=False, norm_eps=1e-6, use_additional_conditions=True)
CAPTION_LENGTH = 6
DIT_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule='linear', beta_start=0.0001,
                     beta_end=0.02)


def as_hub_config(folder):
    """Rename the saved class to ``Transformer2DModel`` (what the hub's DiT/PixArt folders
    say; diffusers remaps it by ``norm_type``)."""
    path = osp.join(folder, 'config.json')
    with open(path) as f:
        cfg = json.load(f)
    cfg['_class_name'] = 'Transformer2DModel'
    with open(path, 'w') as f:
        json.dump(cfg, f)


def tiny_vae(seed):
    from diffusers import AutoencoderKL
    torch.manual_seed(seed)
    return perturb_(AutoencoderKL(**TINY_VAE), seed + 1, scale=0.05).eval()


def tiny_dit(seed=0):
    """A ``DiTTransformer2DModel`` with perturbed random weights (every path alive)."""
    from diffusers import DiTTransformer2DModel
    torch.manual_seed(seed)
    return perturb_(DiTTransformer2DModel(**TINY_DIT), seed, scale=0.05).eval()


def write_tiny_dit(folder, seed=0):
    """A tiny DiT folder under ``folder``; returns (transformer, vae)."""
    from diffusers import DDPMScheduler
    transformer, vae = tiny_dit(seed), tiny_vae(seed)
    transformer.save_pretrained(osp.join(folder, 'transformer'))
    as_hub_config(osp.join(folder, 'transformer'))
    vae.save_pretrained(osp.join(folder, 'vae'))
    DDPMScheduler(**DIT_SCHEDULER).save_pretrained(osp.join(folder, 'scheduler'))
    with open(osp.join(folder, 'model_index.json'), 'w') as f:
        json.dump({'_class_name': 'DiTPipeline'}, f)
    return transformer, vae


def write_tiny_pixart(folder, seed=0, sigma=False):
    """A tiny PixArt folder (``transformer/``, ``vae/``, ``scheduler/``); returns the
    transformer."""
    from diffusers import DDPMScheduler, PixArtTransformer2DModel
    torch.manual_seed(seed)
    config = dict(TINY_PIXART, use_additional_conditions=not sigma)
    transformer = perturb_(PixArtTransformer2DModel(**config), seed, scale=0.05).eval()
    transformer.save_pretrained(osp.join(folder, 'transformer'))
    as_hub_config(osp.join(folder, 'transformer'))
    tiny_vae(seed).save_pretrained(osp.join(folder, 'vae'))
    DDPMScheduler(**DIT_SCHEDULER).save_pretrained(osp.join(folder, 'scheduler'))
    with open(osp.join(folder, 'model_index.json'), 'w') as f:
        json.dump({'_class_name': 'PixArtSigmaPipeline' if sigma else 'PixArtAlphaPipeline'}, f)
    return transformer


def write_text_file(path, seed=0, kept=2):
    """Random ``(CAPTION_LENGTH, 12)`` caption embeddings whose first ``kept`` tokens are
    unmasked (an empty prompt keeps 1: its end token)."""
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(CAPTION_LENGTH, TINY_PIXART['caption_channels'], generator=generator)
    mask = (torch.arange(CAPTION_LENGTH) < kept).long()
    torch.save(dict(prompt_embeds=embeds, prompt_attention_mask=mask), path)
    return embeds, mask
