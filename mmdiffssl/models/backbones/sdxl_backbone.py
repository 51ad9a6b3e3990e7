"""SDXLBackbone: Stable Diffusion XL's U-Net (``UNet2DConditionModel`` with
``addition_embed_type='text_time'``) as a multi-scale feature extractor.

What differs from :class:`~.sd_backbone.SDBackbone` (everything else is SD's):

- text: two CLIP encoders; the context is ``cat(penultimate hidden states of text_encoder
  (768), of text_encoder_2 (1280))`` ``(1, 77, 2048)``, and the pooled, projected output of
  ``text_encoder_2`` ``(1, 1280)`` enters the addition embedding, as diffusers'
  ``StableDiffusionXLPipeline.encode_prompt`` computes them (the null prompt is ``''``);
  or both from a file (``prompt_embeds`` and ``pooled_prompt_embeds``). The encoders are
  loaded at construction, used once and dropped.
- ``time_ids`` per image: (original height, width, crop top, left, target height, width) =
  ``(H, W, 0, 0, H, W)`` of the input size (no crop), through ``add_time_proj``.
- the VAE (``scaling_factor`` 0.13025 in its config) runs in fp32 or bf16: in fp16 it
  overflows, so ``vae_dtype='fp16'`` (or ``dtype='fp16'`` without ``vae_dtype``) is refused.
- blocks: 3 down levels (``down_blocks.0..2`` at image strides 8, 16, 32, the last without
  downsampler), ``mid_block``, ``up_blocks.0..2`` (strides 32, 16, 8); the default
  ``blocks='pyramid'`` reads ``up_blocks.2, 1, 0`` (blocks 7, 6, 5) at strides 8, 16, 32
  with 320, 640, 1280 channels, and ``stride4='vae'`` or ``'upsample'`` adds the stride-4
  level as for SD.
- the refiner (``requires_aesthetics_score``: 5 time ids + an aesthetic score) is refused.
"""
import contextlib
import os.path as osp

import torch

from mmdiffssl.models.unets.diffusers_loading import (check_pretrained, component_dir,
                                                      hub_offline, import_transformers,
                                                      read_json)
from mmdiffssl.utils.checkpoint import read_checkpoint_file

from .base import AUTOCAST_DTYPES, tensor_fingerprint, weights_skipped
from .sd_backbone import SDBackbone

SDXL_PYRAMID_STRIDES = (8, 16, 32)
SDXL_TEXT_TYPES = ('null', 'prompt', 'file')
#: time ids of the base model: original size (2), crop top-left (2), target size (2).
NUM_TIME_IDS = 6


def load_sdxl_embeddings(path):
    """``(1, L, D)`` context and ``(1, D_pool)`` pooled embeddings from a file holding
    ``prompt_embeds`` ``(L, D)``/``(1, L, D)`` and ``pooled_prompt_embeds``
    ``(D_pool,)``/``(1, D_pool)``, read safely by content."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"text embedding file not found: '{path}'")
    obj = read_checkpoint_file(path)
    wanted = ('prompt_embeds', 'pooled_prompt_embeds')
    if not isinstance(obj, dict) or not set(wanted) <= set(obj):
        have = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"'{path}' must hold {wanted} (SDXL's context and pooled "
                         f'embeddings), got {have}')
    context, pooled = obj['prompt_embeds'], obj['pooled_prompt_embeds']
    if context.dim() not in (2, 3) or context.dim() == 3 and context.shape[0] != 1 or \
            pooled.numel() != pooled.shape[-1]:
        raise ValueError(f"'{path}': prompt_embeds {tuple(context.shape)} must be (L, D) or "
                         f'(1, L, D) and pooled_prompt_embeds {tuple(pooled.shape)} (D,) or '
                         '(1, D)')
    return context.reshape(1, *context.shape[-2:]).float(), pooled.reshape(1, -1).float()


def load_sdxl_text_encoders(root):
    """Both tokenizers and text encoders of a local SDXL folder (``tokenizer``,
    ``text_encoder`` = CLIPTextModel, ``tokenizer_2``, ``text_encoder_2`` =
    CLIPTextModelWithProjection), offline, in eval mode."""
    transformers = import_transformers()
    classes = (transformers.CLIPTextModel, transformers.CLIPTextModelWithProjection)
    out = []
    with hub_offline():
        for suffix, cls in zip(('', '_2'), classes):
            tok_dir = osp.join(root, 'tokenizer' + suffix)
            if not osp.isdir(tok_dir):
                raise FileNotFoundError(
                    f"no tokenizer{suffix}/ folder under '{root}': SDXL's null or prompt text "
                    'needs both CLIP tokenizers and text encoders (or give precomputed '
                    "embeddings: text=dict(type='file', path=...))")
            enc_dir = component_dir(root, 'text_encoder' + suffix)
            out.append((transformers.AutoTokenizer.from_pretrained(tok_dir, local_files_only=True),
                        cls.from_pretrained(enc_dir, local_files_only=True).float().eval()))
    return out


def encode_sdxl_prompt(encoders, prompt):
    """(context ``(1, L, D1 + D2)``, pooled ``(1, D_pool)``) of ``prompt`` as SDXL's
    pipeline computes them (penultimate hidden states; pooled projection of encoder 2)."""
    hidden = []
    with torch.no_grad():
        for tokenizer, encoder in encoders:
            ids = tokenizer(prompt, padding='max_length', max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors='pt').input_ids
            out = encoder(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
    return torch.cat(hidden, dim=-1).float(), out[0].float()


class SDXLBackbone(SDBackbone):
    """Features of SDXL's U-Net on VAE latents (see the module docstring).

    Args:
        pretrained (str, optional): a local SDXL folder in diffusers layout (``unet/``,
            ``vae/``, ``scheduler/``, ``text_encoder{,_2}/``, ``tokenizer{,_2}/``), or a
            single checkpoint file (original layout, converted by diffusers) with ``config``
            (whose ``text_encoder{,_2}/`` hold weights for the null/prompt text).
        text (dict): ``dict(type='null')`` (default), ``dict(type='prompt', text=...)`` or
            ``dict(type='file', path=...)`` (``prompt_embeds`` and ``pooled_prompt_embeds``;
            no text encoder or transformers needed).
        vae_dtype (str, optional): 'fp32' or 'bf16' autocast of the VAE encoder; None follows
            ``dtype`` ('fp16' is refused: SDXL's VAE overflows in fp16).
        **kwargs: :class:`~.sd_backbone.SDBackbone`'s (``config``, ``unet_config``,
            ``vae_config``, ``scheduler``, ``stride4``, ``attention_maps``, ...) and the shared
            ones (``blocks`` default ``'pyramid'`` at strides 8, 16, 32).

    Shapes:
        input ``(B, 3, H, W)``, H and W multiples of 32 (the VAE's 8 times the U-Net's 4);
        output as SD's.
    """

    family = 'SDXL'
    default_pyramid_strides = SDXL_PYRAMID_STRIDES
    addition_embed_types = ('text_time', )

    def __init__(self, text=dict(type='null'), vae_dtype=None, **kwargs):
        dtype = kwargs.get('dtype', 'fp32')
        vae_dtype = dtype if vae_dtype is None else vae_dtype
        if vae_dtype not in AUTOCAST_DTYPES:
            raise ValueError(f'vae_dtype={vae_dtype!r} is not one of {tuple(AUTOCAST_DTYPES)}')
        if vae_dtype == 'fp16':
            raise ValueError("SDXL's VAE overflows in fp16 (inf/NaN latents): set "
                             "vae_dtype='fp32' or 'bf16' (the U-Net may still run with "
                             "dtype='fp16')")
        if not isinstance(text, dict) or text.get('type') not in SDXL_TEXT_TYPES:
            raise ValueError(f'text={text!r} is not allowed for SDXL: give dict(type=...) with '
                             f'type one of {SDXL_TEXT_TYPES}')
        self.vae_dtype = vae_dtype
        self._pooled = None
        super().__init__(text=text, **kwargs)
        # recomputed at construction: not part of run checkpoints
        self.register_buffer('pooled_embeds', self._pooled, persistent=False)
        self._pooled = None
        self._check_addition()

    def _build_network(self):
        if self.pretrained is not None and \
                check_pretrained(self.pretrained, self.config, ('unet', 'vae')) == 'folder':
            index = osp.join(self.pretrained, 'model_index.json')
            if osp.isfile(index) and read_json(index).get('requires_aesthetics_score'):
                raise ValueError(self._refiner_error())
        return super()._build_network()

    @staticmethod
    def _refiner_error():
        return ('the SDXL refiner (5 time ids + an aesthetic score, requires_aesthetics_score) '
                'is not supported: use the SDXL base model')

    def _check_addition(self):
        """The U-Net's addition embedding must take pooled text + 6 time ids (the base)."""
        config = self.unet.config
        width = int(config.projection_class_embeddings_input_dim)
        time_dim = int(config.addition_time_embed_dim)
        pooled = self.pooled_embeds.shape[-1]
        if width == pooled + (NUM_TIME_IDS - 1) * time_dim:
            raise ValueError(self._refiner_error())
        if width != pooled + NUM_TIME_IDS * time_dim:
            raise ValueError(f'the U-Net addition embedding takes {width} features, but the '
                             f'pooled text ({pooled}) and {NUM_TIME_IDS} time ids of '
                             f'{time_dim} make {pooled + NUM_TIME_IDS * time_dim}')

    def _fixed_embedding(self, text, checkpoint):
        kind = text.get('type')
        if kind == 'file':
            unknown = set(text) - {'type', 'path'}
            if unknown or not text.get('path'):
                raise ValueError(f"text=dict(type='file') takes path= only, got {text!r}")
            context, self._pooled = load_sdxl_embeddings(text['path'])
            return context
        if set(text) - {'type', 'text'} or kind == 'prompt' and \
                not isinstance(text.get('text'), str):
            raise ValueError(f"text={text!r}: give dict(type='null') or "
                             "dict(type='prompt', text='...')")
        if self.pretrained is None:
            raise ValueError(f"text type '{kind}' needs SDXL's text encoders of a pretrained "
                             "folder; without pretrained use type 'file'")
        root = self.pretrained if osp.isdir(self.pretrained) else self.config
        if weights_skipped():   # shapes only, from the configs
            pooled = read_json(osp.join(root, 'text_encoder_2', 'config.json'))['projection_dim']
            length = read_json(osp.join(root, 'text_encoder', 'config.json'))[
                'max_position_embeddings']
            self._pooled = torch.zeros(1, pooled)
            return torch.zeros(1, length, self.unet.config.cross_attention_dim)
        context, self._pooled = encode_sdxl_prompt(load_sdxl_text_encoders(root),
                                                   text.get('text', ''))
        return context

    def _vae_autocast(self, device_type):
        dtype = AUTOCAST_DTYPES[self.vae_dtype]
        if device_type == 'meta':   # shape-only runs
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def _added_conditions(self, x_t, count):
        height, width = (s * self._stride_factor for s in x_t.shape[-2:])
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32,
                                device=x_t.device).expand(count, -1)
        return dict(text_embeds=self.pooled_embeds.expand(count, -1), time_ids=time_ids)

    def cache_key(self):
        return dict(super().cache_key(), pooled=tensor_fingerprint(self.pooled_embeds),
                    vae_dtype=self.vae_dtype)
