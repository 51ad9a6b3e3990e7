"""PixArtBackbone: the text-conditioned latent diffusion transformers PixArt-α and PixArt-Σ
(diffusers ``PixArtTransformer2DModel``) as feature extractors.

PixArt-α/Σ XL/2: 28 blocks of width 1152, patch 2 on SD's VAE latents (Σ: the SDXL VAE
weights' config), so every block's feature is ``(B, 1152, H/16, W/16)``; each block
self-attends, cross-attends to T5-XXL text embeddings (4096 wide, projected to 1152 by
``caption_projection``) and is modulated by one shared timestep embedding (``adaln_single``)
plus its own ``scale_shift_table``. Trained on DDPM's linear schedule (1e-4..0.02, 1000 steps).

Text: embeddings from a file only (``tools/write_t5_embeddings.py`` writes them where T5 is
available; the backbone never loads T5): ``prompt_embeds`` ``(L, 4096)`` and
``prompt_attention_mask`` ``(L,)`` (L = 120 for α, 300 for Σ; the empty prompt is the null
text). The mask is applied to the cross-attention as diffusers' pipeline applies it.

Size conditioning: the models whose config needs it (PixArt-α 1024, ``use_additional_conditions``)
get ``added_cond_kwargs`` resolution ``(H, W)`` of the input image in pixels and aspect ratio
``H / W``, as the pipeline passes them. Other input sizes rely on the interpolated positional
embeddings (:mod:`.transformer_backbone`); the resolution binning of diffusers' pipeline
(resizing to the nearest trained aspect ratio) belongs to the extraction API, off by default
(``extract_features(..., resolution_binning=True)``, :mod:`mmdiffssl.apis.binning`).
"""
import os.path as osp

import torch

from mmdiffssl.utils.checkpoint import read_checkpoint_file

from .base import tensor_fingerprint
from .transformer_backbone import LatentTransformerBackbone


def load_t5_embedding(path):
    """``(1, L, D)`` T5 embeddings and their ``(1, L)`` attention mask from a file holding
    ``prompt_embeds`` ``(L, D)``/``(1, L, D)`` and optionally ``prompt_attention_mask``
    ``(L,)``/``(1, L)`` (default all ones), read safely by content."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"text embedding file not found: '{path}' (write one with "
                                'tools/write_t5_embeddings.py)')
    obj = read_checkpoint_file(path)
    if not isinstance(obj, dict) or 'prompt_embeds' not in obj:
        have = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"'{path}' must hold prompt_embeds (and prompt_attention_mask), got "
                         f'{have}')
    embeds = obj['prompt_embeds']
    if embeds.dim() not in (2, 3) or embeds.dim() == 3 and embeds.shape[0] != 1:
        raise ValueError(f"'{path}': prompt_embeds must be (L, D) or (1, L, D), got "
                         f'{tuple(embeds.shape)}')
    embeds = embeds.reshape(1, *embeds.shape[-2:]).float()
    mask = obj.get('prompt_attention_mask')
    mask = torch.ones(embeds.shape[:2]) if mask is None else mask.reshape(1, -1).float()
    if mask.shape[1] != embeds.shape[1]:
        raise ValueError(f"'{path}': prompt_attention_mask has {mask.shape[1]} positions for "
                         f'{embeds.shape[1]} tokens')
    return embeds, mask


def encode_t5_prompt(folder, prompt='', max_length=120):
    """PixArt's text embedding of ``prompt`` as diffusers' PixArt pipelines compute it (for
    ``tools/write_t5_embeddings.py``; never called by the backbone).

    Args:
        folder (str): a local folder with ``tokenizer/`` and ``text_encoder/`` (a PixArt
            pipeline folder: T5-XXL's ``T5EncoderModel``), read offline.
        prompt (str): the text; ``''`` is the null text.
        max_length (int): padded length (120 for PixArt-α, 300 for PixArt-Σ).

    Returns:
        dict: ``prompt_embeds`` ``(L, D)`` float32 and ``prompt_attention_mask`` ``(L,)``.
    """
    from mmdiffssl.models.unets.diffusers_loading import (component_dir, hub_offline,
                                                          import_transformers)
    transformers = import_transformers()
    tok_dir = osp.join(folder, 'tokenizer')
    if not osp.isdir(tok_dir):
        raise FileNotFoundError(f"no tokenizer/ folder under '{folder}'")
    with hub_offline(), torch.no_grad():
        tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        encoder = transformers.T5EncoderModel.from_pretrained(
            component_dir(folder, 'text_encoder'), local_files_only=True).eval()
        tokens = tokenizer(prompt, padding='max_length', max_length=max_length, truncation=True,
                           add_special_tokens=True, return_tensors='pt')
        embeds = encoder(tokens.input_ids, attention_mask=tokens.attention_mask)[0]
    return dict(prompt_embeds=embeds[0].float(), prompt_attention_mask=tokens.attention_mask[0])


class PixArtBackbone(LatentTransformerBackbone):
    """Features of PixArt-α/Σ's transformer blocks on VAE latents.

    Args:
        pretrained (str, optional): a local diffusers PixArt folder (``transformer/``,
            ``vae/``, ``scheduler/``; ``text_encoder/`` is never read), or a single
            diffusers-layout weights file of the transformer with ``config``.
        text (dict): ``dict(type='file', path=...)``: the T5 embeddings (see the module
            docstring); required.
        **kwargs: :class:`~.transformer_backbone.LatentTransformerBackbone`'s and the shared
            ones (``blocks`` default the middle block, ``timesteps`` 100, ``feature``,
            ``massive_channels``, ...).

    Shapes:
        input ``(B, 3, H, W)`` in [-1, 1], H and W multiples of 8 p (16 for XL/2); output
        one ``(B, D * T, H / 8p, W / 8p)`` map per block.
    """

    family = 'PixArt'
    transformer_class = 'PixArtTransformer2DModel'
    norm_type = 'ada_norm_single'
    modulation_children = ('norm1', )
    final_modulation = ('scale_shift_table', )
    output_layers = ('proj_out', )

    def __init__(self, text=None, **kwargs):
        if not isinstance(text, dict) or text.get('type') != 'file' or set(text) != {'type',
                                                                                    'path'}:
            raise ValueError(f"text={text!r} is not allowed: PixArt takes T5 embeddings from a "
                             "file, text=dict(type='file', path=...) (tools/"
                             'write_t5_embeddings.py writes them; the backbone never loads T5)')
        embeds, mask = load_t5_embedding(text['path'])
        self.text = dict(text)
        super().__init__(**kwargs)
        width = self.transformer.config.caption_channels
        if embeds.shape[-1] != width:
            raise ValueError(f"'{text['path']}' holds {embeds.shape[-1]}-wide embeddings but the "
                             f'transformer takes caption_channels={width}')
        # read at construction from the file: not part of run checkpoints
        self.register_buffer('prompt_embeds', embeds, persistent=False)
        self.register_buffer('prompt_mask', mask, persistent=False)

    def condition_key(self):
        return dict(text=tensor_fingerprint(self.prompt_embeds),
                    text_mask=tensor_fingerprint(self.prompt_mask))

    # ------------------------------------------------------------------ forward
    def _size_conditions(self, x_t, count):
        """``added_cond_kwargs`` of the timestep embedding: the image size where the model
        needs it (diffusers' pipeline passes the image's height and width in pixels)."""
        if not self.transformer.use_additional_conditions:
            return dict(resolution=None, aspect_ratio=None)
        height, width = (s * self._stride_factor for s in x_t.shape[-2:])
        return dict(resolution=torch.tensor([[height, width]], dtype=x_t.dtype,
                                            device=x_t.device).expand(count, -1),
                    aspect_ratio=torch.tensor([[height / width]], dtype=x_t.dtype,
                                              device=x_t.device).expand(count, -1))

    def _conditioning(self, x_t, t_batch):
        model, count = self.transformer, len(t_batch)
        timestep, embedded = model.adaln_single(t_batch, self._size_conditions(x_t, count),
                                                batch_size=count, hidden_dtype=x_t.dtype)
        context = model.caption_projection(self.prompt_embeds.to(x_t.dtype))
        mask = (1 - self.prompt_mask.to(x_t.dtype)) * -10000.0        # bias, as diffusers
        return dict(timestep=timestep, embedded_timestep=embedded,
                    encoder_hidden_states=context.expand(count, -1, -1),
                    encoder_attention_mask=mask[:, None].expand(count, -1, -1))

    def _block_kwargs(self, cond):
        return dict(timestep=cond['timestep'], encoder_hidden_states=cond['encoder_hidden_states'],
                    encoder_attention_mask=cond['encoder_attention_mask'])

    def _modulate(self, index, tokens, cond):
        model, count = self.transformer, tokens.shape[0]
        if index < len(self.block_table):
            block = model.transformer_blocks[index]
            shift, scale = (block.scale_shift_table[None] +
                            cond['timestep'].reshape(count, 6, -1)).chunk(6, dim=1)[:2]
            return block.norm1(tokens) * (1 + scale) + shift
        shift, scale = (model.scale_shift_table[None] +
                        cond['embedded_timestep'][:, None]).chunk(2, dim=1)
        return model.norm_out(tokens) * (1 + scale) + shift
