"""Tiny random diffusers models for the SDBackbone / DiffusersUNetBackbone tests (CPU).

- :data:`TINY_UNET`, :data:`TINY_VAE`: a Stable-Diffusion-shaped pair with small widths: the
  VAE downsamples by 8 (4 levels), the U-Net has SD 1.x's block types (3 cross-attention down
  blocks + a plain one, 2 ResNets per block, 2 heads), so images of 64 x 64 give latents of
  8 x 8 and the decoder pyramid has strides 8, 16, 32, 64.
- :func:`write_tiny_sd`: such a model as a local diffusers folder (``unet/``, ``vae/``,
  ``scheduler/``, ``text_encoder/``, ``tokenizer/`` with a 56-token vocabulary).
- :func:`to_original_layout`: the same weights in the original CompVis (LDM) single-file
  layout (``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.*``),
  written here from the known key layout, for the single-file loading test.
- :data:`TINY_DDPM`: a pixel-space ``UNet2DModel`` with DDPM's block types.
- pytest fixtures, imported by the SD test modules: :func:`tiny_sd` (a session-scoped tiny SD
  folder) and :func:`no_network`.
"""
import json
import os
import os.path as osp
import re
import socket

import pytest
import torch


@pytest.fixture(scope='session')
def tiny_sd(tmp_path_factory):
    """A tiny Stable Diffusion folder (:func:`write_tiny_sd`), written once per test run and
    read by every module that asks for it (tests must not write into it)."""
    from conftest import shared_folder
    return shared_folder(tmp_path_factory, 'tiny_sd', write_tiny_sd)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a name fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f'network access attempted: {args[:2]}')
    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)
    monkeypatch.setattr(socket, 'getaddrinfo', refuse)

TEXT_DIM = 16
TINY_UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(16, 16, 32, 32), norm_num_groups=8, cross_attention_dim=TEXT_DIM,
    attention_head_dim=2,
    down_block_types=('CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D',
                      'DownBlock2D'),
    up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D',
                    'CrossAttnUpBlock2D'))
TINY_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
    block_out_channels=(8, 8, 16, 16), norm_num_groups=4, sample_size=64,
    down_block_types=('DownEncoderBlock2D', ) * 4, up_block_types=('UpDecoderBlock2D', ) * 4)
TINY_DDPM = dict(
    sample_size=16, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(16, 32, 32), norm_num_groups=8, attention_head_dim=8,
    down_block_types=('DownBlock2D', 'AttnDownBlock2D', 'DownBlock2D'),
    up_block_types=('UpBlock2D', 'AttnUpBlock2D', 'UpBlock2D'))
SD_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule='scaled_linear', beta_start=0.00085,
                    beta_end=0.012)
# SD's block table for the tiny U-Net: (name, channels, image stride, cross-attention)
TINY_BLOCKS = [('down_blocks.0', 16, 8, True), ('down_blocks.1', 16, 16, True),
               ('down_blocks.2', 32, 32, True), ('down_blocks.3', 32, 64, False),
               ('mid_block', 32, 64, True), ('up_blocks.0', 32, 64, False),
               ('up_blocks.1', 32, 32, True), ('up_blocks.2', 16, 16, True),
               ('up_blocks.3', 16, 8, True)]


def perturb_(model, seed=0, scale=0.2):
    """Add noise to every parameter (GroupNorm/LayerNorm affines are 1/0 and some diffusers
    layers start at zero: parity tests need every path alive)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    return model


def tiny_models(seed=0):
    """(unet, vae) with perturbed random weights, eval mode."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    torch.manual_seed(seed)
    unet = perturb_(UNet2DConditionModel(**TINY_UNET), seed, scale=0.05)
    vae = perturb_(AutoencoderKL(**TINY_VAE), seed + 1, scale=0.05)
    return unet.eval(), vae.eval()


def _vocab():
    letters = 'abcdefghijklmnopqrstuvwxyz'
    tokens = list(letters) + [c + '</w>' for c in letters] + ['<|startoftext|>',
                                                              '<|endoftext|>']
    return {t: i for i, t in enumerate(tokens)}


def tiny_text_encoder(folder, seed=0):
    """Write ``folder/tokenizer`` and ``folder/text_encoder`` (a 2-layer CLIP, width 16)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    vocab = _vocab()
    tok_dir = osp.join(folder, 'tokenizer')
    os.makedirs(tok_dir, exist_ok=True)
    with open(osp.join(tok_dir, 'vocab.json'), 'w') as f:
        json.dump(vocab, f)
    with open(osp.join(tok_dir, 'merges.txt'), 'w') as f:
        f.write('#version: 0.2\n')
    tokenizer = CLIPTokenizer(osp.join(tok_dir, 'vocab.json'), osp.join(tok_dir, 'merges.txt'),
                              model_max_length=77)
    tokenizer.save_pretrained(tok_dir)
    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=TEXT_DIM, intermediate_size=32,
                            num_hidden_layers=2, num_attention_heads=2,
                            max_position_embeddings=77, bos_token_id=vocab['<|startoftext|>'],
                            eos_token_id=vocab['<|endoftext|>'],
                            pad_token_id=vocab['<|endoftext|>'])
    encoder = perturb_(CLIPTextModel(config), seed + 2, scale=0.05).eval()
    encoder.save_pretrained(osp.join(folder, 'text_encoder'))
    return tokenizer, encoder


def write_tiny_sd(folder, seed=0, text_encoder=True):
    """A tiny Stable Diffusion in diffusers layout under ``folder``; returns (unet, vae)."""
    from diffusers import DDPMScheduler
    unet, vae = tiny_models(seed)
    unet.save_pretrained(osp.join(folder, 'unet'))
    vae.save_pretrained(osp.join(folder, 'vae'))
    DDPMScheduler(**SD_SCHEDULER).save_pretrained(osp.join(folder, 'scheduler'))
    if text_encoder:
        tiny_text_encoder(folder, seed)
    with open(osp.join(folder, 'model_index.json'), 'w') as f:
        json.dump({'_class_name': 'StableDiffusionPipeline'}, f)
    return unet, vae


def configs_only(src, dst):
    """Copy the config files (no weights) of a diffusers folder: the ``config=`` folder of
    a single-file load."""
    import shutil
    for root, _, files in os.walk(src):
        for name in files:
            if name.endswith(('.json', '.txt')):
                target = osp.join(dst, osp.relpath(root, src))
                os.makedirs(target, exist_ok=True)
                shutil.copy(osp.join(root, name), target)
    return dst


# ---------------------------------------------------------------------- original layout
_RESNET = {'norm1': 'in_layers.0', 'conv1': 'in_layers.2', 'time_emb_proj': 'emb_layers.1',
           'norm2': 'out_layers.0', 'conv2': 'out_layers.3', 'conv_shortcut': 'skip_connection'}
_VAE_ATTN = {'group_norm': 'norm', 'to_q': 'q', 'to_k': 'k', 'to_v': 'v', 'to_out.0': 'proj_out'}


def _resnet(rest, table=_RESNET):
    head, _, tail = rest.partition('.')
    return f'{table.get(head, head)}.{tail}'


def _unet_key(key, per_block, unet):
    m = re.match(r'down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)', key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        n = i * (per_block + 1) + j + 1
        return f'input_blocks.{n}.0.{_resnet(rest)}' if kind == 'resnets' else \
            f'input_blocks.{n}.1.{rest}'
    m = re.match(r'down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)', key)
    if m:
        return f'input_blocks.{(int(m[1]) + 1) * (per_block + 1)}.0.op.{m[2]}'
    m = re.match(r'mid_block\.(resnets|attentions)\.(\d+)\.(.*)', key)
    if m:
        if m[1] == 'attentions':
            return f'middle_block.1.{m[3]}'
        return f'middle_block.{2 * int(m[2])}.{_resnet(m[3])}'
    m = re.match(r'up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)', key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        n = i * (per_block + 1) + j
        return f'output_blocks.{n}.0.{_resnet(rest)}' if kind == 'resnets' else \
            f'output_blocks.{n}.1.{rest}'
    m = re.match(r'up_blocks\.(\d+)\.upsamplers\.0\.(.*)', key)
    if m:
        i = int(m[1])
        slot = 2 if getattr(unet.up_blocks[i], 'attentions', None) else 1
        return f'output_blocks.{i * (per_block + 1) + per_block}.{slot}.{m[2]}'
    for new, old in (('time_embedding.linear_1.', 'time_embed.0.'),
                     ('time_embedding.linear_2.', 'time_embed.2.'),
                     ('conv_in.', 'input_blocks.0.0.'), ('conv_norm_out.', 'out.0.'),
                     ('conv_out.', 'out.2.')):
        if key.startswith(new):
            return old + key[len(new):]
    raise KeyError(key)


def _vae_key(key, num_levels):
    m = re.match(r'(encoder|decoder)\.(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.*)', key)
    if m:
        level = int(m[3]) if m[2] == 'down' else num_levels - 1 - int(m[3])
        return f'{m[1]}.{m[2]}.{level}.block.{m[4]}.' + _resnet(m[5], {'conv_shortcut':
                                                                        'nin_shortcut'})
    m = re.match(r'(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(down|up)samplers\.0\.(.*)', key)
    if m:
        level = int(m[3]) if m[2] == 'down' else num_levels - 1 - int(m[3])
        return f'{m[1]}.{m[2]}.{level}.{m[4]}sample.{m[5]}'
    m = re.match(r'(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)', key)
    if m:
        return f'{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}'
    m = re.match(r'(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)', key)
    if m:
        return f'{m[1]}.mid.attn_1.{_VAE_ATTN[m[2]]}.{m[3]}'
    return key.replace('conv_norm_out', 'norm_out')


def to_original_layout(unet, vae, text_encoder=None):
    """One state dict in the original single-file layout of a Stable Diffusion checkpoint."""
    per_block = unet.config.layers_per_block
    out = {'model.diffusion_model.' + _unet_key(k, per_block, unet): v.clone()
           for k, v in unet.state_dict().items()}
    levels = len(vae.config.block_out_channels)
    for key, value in vae.state_dict().items():
        new = _vae_key(key, levels)
        if '.mid.attn_1.' in new and new.endswith('weight') and 'norm' not in new:
            value = value[:, :, None, None]   # 1x1 convolutions in the original VAE
        out['first_stage_model.' + new] = value.clone()
    if text_encoder is not None:
        out.update({'cond_stage_model.transformer.' + k: v.clone()
                    for k, v in text_encoder.state_dict().items()})
    return out
