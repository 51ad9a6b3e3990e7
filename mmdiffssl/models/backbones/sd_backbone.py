"""SDBackbone: Stable Diffusion (latent diffusion) as a multi-scale feature extractor.

image (B, 3, H, W) in [-1, 1]
  -> AutoencoderKL encoder, posterior mean, times the VAE's ``scaling_factor`` (0.18215 for
     SD 1.x/2.x; VPD left it out), minus ``shift_factor`` first where the VAE has one
  -> latents (B, 4, H/8, W/8) noised to each timestep (q_sample on the model's training
     schedule, scaled_linear 0.00085..0.012 for SD 1.x/2.x; the noise modes of ADMBackbone)
  -> UNet2DConditionModel run block by block up to the deepest requested block, conditioned
     on a text embedding: the null prompt, a prompt, embeddings from a file, or learned tokens
  -> one feature per block (timesteps fused), optionally with the block's cross-attention
     maps as extra channels (VPD) and a stride-4 level in front (for Mask R-CNN).

Block numbers and names: :mod:`mmdiffssl.models.unets.diffusers_blocks`. The default
``blocks='pyramid'`` is the decoder pyramid ``up_blocks.3, 2, 1, 0`` (blocks 9, 8, 7, 6) at
strides 8, 16, 32, 64 of the image with 320, 640, 1280, 1280 channels for SD 1.x/2.x.
"""
import os.path as osp

import torch
import torch.nn.functional as F
from torch import nn

from mmdiffssl.models.unets.diffusers_loading import (SD_SCHEDULER, check_pretrained,
                                                      encode_prompt, load_single_file,
                                                      load_text_encoder, read_json,
                                                      schedule_from_config, scheduler_config)
from mmdiffssl.utils.checkpoint import read_checkpoint_file

from .base import ShapeSpec, jsonable, tensor_fingerprint, weights_skipped
from .diffusers_unet_backbone import DiffusersBackbone, build_or_load
from .latent_vae import LatentVAEMixin, build_vae, scaled_latents, vae_downsampling

TEXT_TYPES = ('null', 'prompt', 'file', 'learned')
STRIDE4_MODES = (None, 'vae', 'upsample')
SD_PYRAMID_STRIDES = (8, 16, 32, 64)


def load_embedding_file(path):
    """A ``(1, L, D)`` text embedding from ``.pt``/``.pth``/``.safetensors``: a tensor
    ``(L, D)`` or ``(1, L, D)``, or a dict holding it as ``'prompt_embeds'`` or alone.

    The file is read by content, safely (:func:`read_checkpoint_file`); an unreadable file
    raises a CheckpointReadError naming it and the format tried."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"text embedding file not found: '{path}'")
    obj = read_checkpoint_file(path)
    if isinstance(obj, dict):
        if 'prompt_embeds' in obj:
            obj = obj['prompt_embeds']
        elif len(obj) == 1:
            obj = next(iter(obj.values()))
        else:
            raise ValueError(f"'{path}' holds {sorted(obj)}: store one tensor, or name it "
                             "'prompt_embeds'")
    if not torch.is_tensor(obj) or obj.dim() not in (2, 3) or (obj.dim() == 3
                                                              and obj.shape[0] != 1):
        shape = tuple(obj.shape) if torch.is_tensor(obj) else type(obj).__name__
        raise ValueError(f"'{path}' must hold a (L, D) or (1, L, D) tensor, got {shape}")
    return obj.reshape(1, *obj.shape[-2:]).float()


class SDBackbone(LatentVAEMixin, DiffusersBackbone):
    """Features of Stable Diffusion's U-Net on VAE latents, at chosen blocks and timesteps.

    Args:
        pretrained (str, optional): a local Stable Diffusion folder in diffusers layout
            (``unet/``, ``vae/``, ``scheduler/``; ``text_encoder/`` and ``tokenizer/`` for
            the null/prompt conditioning), or a single checkpoint file (original LDM layout,
            e.g. ``v1-5-pruned-emaonly.safetensors``, or a diffusers-layout state dict) with
            ``config``. Nothing is downloaded: a missing path raises FileNotFoundError (see
            :mod:`mmdiffssl.models.unets.diffusers_loading`).
        config (str, optional): with a single file, a local diffusers folder holding the
            component configs (``unet/config.json``, ``vae/config.json``, ...).
        unet_config, vae_config (dict, optional): without ``pretrained``, build randomly
            initialised models from these diffusers configs (smoke tests).
        scheduler (dict, optional): overrides of the training schedule (diffusers scheduler
            keys); default the folder's ``scheduler/scheduler_config.json``, else SD's
            scaled_linear 0.00085..0.012 over 1000 steps.
        text (dict): the text conditioning, one of
            ``dict(type='null')`` (the empty prompt through the CLIP text encoder; the
            encoder is loaded at construction, used once and dropped),
            ``dict(type='prompt', text='a photo')``,
            ``dict(type='file', path='embeds.pt')`` (precomputed ``(L, D)`` or
            ``(1, L, D)`` embeddings; no text encoder or transformers needed), or
            ``dict(type='learned', num_tokens=8, std=1.0)`` /
            ``dict(type='learned', init=dict(type='null'))`` (trainable prompt tokens, a
            parameter of the backbone that trains even when the U-Net is frozen).
        stride4 (str, optional): a stride-4 output put first: 'vae' (the VAE encoder's
            feature at stride 4 of the clean image: the output of its down block at stride
            4, before that block's downsampler; 512 channels for SD) or 'upsample' (the
            stride-8 output upsampled x2, bilinear). None: no such level. With it the
            outputs are one more than ``blocks``.
        attention_maps (bool | Sequence[int | str]): append VPD-style cross-attention maps
            (head- and layer-averaged softmax over the text tokens, ``(L, H_b, W_b)`` per
            timestep) to the features of the requested blocks that have cross-attention
            (True: all of them; or a list of such blocks).
        attention_tokens (Sequence[int], optional): keep the maps of these token positions
            only (default all L).
        **kwargs: the arguments every family shares (:class:`~.base.DiffusionBackbone`):
            ``blocks`` (default ``'pyramid'``, the last decoder block at image strides 8, 16,
            32, 64; numbers or names such as ``'up_blocks.1'``), ``timesteps`` (default 100,
            in [0, 1000)), ``noise`` (drawn in latent space, ``(B, 4, H/8, W/8)``),
            ``frozen`` (the U-Net; the VAE never trains), ``with_cp`` (diffusers' gradient
            checkpointing), ``dtype`` (autocast of VAE and U-Net), ...

    Shapes:
        input ``(B, 3, H, W)``, H and W multiples of ``size_divisibility`` (64 for SD: the VAE's 8
        times the U-Net's 8); output: a tuple of ``(B, C_i, H / s_i, W / s_i)``, the
        stride-4 level first if any, then one per block; ``output_shape()`` gives every
        ``(C_i, s_i)`` (block channels x timesteps for 'concat', plus tokens x timesteps of
        attention maps). ``intermediates``/``intermediates_at`` are ADMBackbone's, on the
        U-Net blocks only (no stride-4 level), without ``injections``.
    """

    family = 'Stable Diffusion'
    default_pyramid_strides = SD_PYRAMID_STRIDES

    def __init__(self,
                 pretrained=None,
                 config=None,
                 unet_config=None,
                 vae_config=None,
                 scheduler=None,
                 text=dict(type='null'),
                 stride4=None,
                 attention_maps=False,
                 attention_tokens=None,
                 **kwargs):
        self.pretrained, self.config = pretrained, config
        self.unet_config, self.vae_config = unet_config, vae_config
        self.scheduler_overrides = scheduler
        self._single_file = None
        if pretrained is not None and not weights_skipped() and \
                check_pretrained(pretrained, config, ('unet', 'vae')) == 'file':
            self._single_file = load_single_file(pretrained)   # read once for all components
        super().__init__(**kwargs)
        self._setup_text(text, self._single_file)
        self._single_file = None
        self._setup_attention_maps(attention_maps, attention_tokens)
        self._setup_stride4(stride4)

    def _build_network(self):
        self.vae = build_vae(self.pretrained, self.config, self.vae_config, self._single_file)
        self._stride_factor = vae_downsampling(self.vae)
        unet = build_or_load('UNet2DConditionModel', self.pretrained, self.config,
                             self.unet_config, 'unet', checkpoint=self._single_file)
        if unet.config.in_channels != self.vae.config.latent_channels:
            raise ValueError(f'the U-Net takes {unet.config.in_channels} channels but the VAE '
                             f'makes {self.vae.config.latent_channels}-channel latents')
        self._setup_unet(unet)
        return schedule_from_config(
            scheduler_config(self.pretrained, self.config, self.scheduler_overrides,
                             SD_SCHEDULER))

    def weights_fingerprint(self):
        return self._weights_fingerprint(('unet', 'vae'))

    def cache_key(self):
        if self.prompt_embeds.requires_grad:
            raise self.unsupported('a cache key with learned text tokens (they train)')
        return dict(family=self.family, weights=self.weights_fingerprint(),
                    arch=dict(unet=jsonable(dict(self.unet.config)),
                              vae=jsonable(dict(self.vae.config))),
                    text=tensor_fingerprint(self.prompt_embeds), stride4=self.stride4,
                    attention_maps=list(self.attention_map_blocks),
                    attention_tokens=list(self.attention_tokens), **self.feature_key())

    # ------------------------------------------------------------------ construction
    @property
    def scaling_factor(self):
        """The VAE's latent scaling factor (0.18215 for SD 1.x/2.x)."""
        return float(self.vae.config.scaling_factor)

    def _setup_text(self, text, checkpoint):
        if not isinstance(text, dict) or text.get('type') not in TEXT_TYPES:
            raise ValueError(f'text={text!r} is not allowed: give dict(type=...) with type one '
                             f'of {TEXT_TYPES}')
        self.text = dict(text)
        if text['type'] == 'learned':
            unknown = set(text) - {'type', 'num_tokens', 'init', 'std'}
            if unknown:
                raise ValueError(f'unknown keys {sorted(unknown)} in text={text!r}')
            init = text.get('init')
            if init is not None:
                if text.get('num_tokens') is not None:
                    raise ValueError("text: give num_tokens (random init) or init, not both")
                if not isinstance(init, dict) or init.get('type') == 'learned':
                    raise ValueError(f"text init={init!r}: give dict(type='null'|'prompt'|"
                                     "'file', ...)")
                embeds = self._fixed_embedding(init, checkpoint)
            else:
                num = text.get('num_tokens')
                if not isinstance(num, int) or num < 1:
                    raise ValueError(f'learned text tokens need num_tokens >= 1, got {num!r}')
                dim = self.unet.config.cross_attention_dim
                embeds = torch.randn(1, num, dim, generator=torch.Generator().manual_seed(0))
                embeds = embeds * float(text.get('std', 1.0))
            self.prompt_embeds = nn.Parameter(embeds)
        else:
            # recomputed at construction: not part of run checkpoints
            self.register_buffer('prompt_embeds', self._fixed_embedding(text, checkpoint),
                                 persistent=False)
        dim = self.unet.config.cross_attention_dim
        if self.prompt_embeds.shape[-1] != dim:
            raise ValueError(f'text embeddings have width {self.prompt_embeds.shape[-1]} but '
                             f'the U-Net cross-attends to width {dim} (cross_attention_dim)')

    def _fixed_embedding(self, text, checkpoint):
        kind = text.get('type')
        allowed = {'null': {'type'}, 'prompt': {'type', 'text'}, 'file': {'type', 'path'}}
        if kind not in allowed:
            raise ValueError(f"text type '{kind}' is not one of {tuple(allowed)}")
        unknown = set(text) - allowed[kind]
        if unknown:
            raise ValueError(f'unknown keys {sorted(unknown)} in text={text!r}')
        if kind == 'file':
            if not text.get('path'):
                raise ValueError("text=dict(type='file') needs path=")
            return load_embedding_file(text['path'])
        if kind == 'prompt' and not isinstance(text.get('text'), str):
            raise ValueError("text=dict(type='prompt') needs text='...'")
        if self.pretrained is None:
            raise ValueError(f"text type '{kind}' needs the CLIP text encoder of a pretrained "
                             "folder; without pretrained use type 'file' or 'learned'")
        if weights_skipped():   # shapes only: the encoder's output shape, from its config
            folder = self.pretrained if osp.isdir(self.pretrained) else self.config
            encoder = read_json(osp.join(folder, 'text_encoder', 'config.json'))
            return torch.zeros(1, encoder['max_position_embeddings'],
                               self.unet.config.cross_attention_dim)
        tokenizer, encoder = load_text_encoder(self.pretrained, self.config, checkpoint)
        return encode_prompt(tokenizer, encoder, text.get('text', ''))

    def _setup_attention_maps(self, attention_maps, attention_tokens):
        rows = {r.index: r for r in self.block_table}
        if attention_maps is True:
            chosen = [b for b in self.blocks if rows[b].cross_attention]
            if not chosen:
                raise ValueError('attention_maps=True but none of the requested blocks '
                                 f'{self.blocks} has cross-attention')
        elif attention_maps is False or attention_maps is None:
            chosen = []
        else:
            chosen = list(self.block_table.resolve(attention_maps))
            for b in chosen:
                if b not in self.blocks:
                    raise ValueError(f'attention_maps block {b} is not among blocks '
                                     f'{self.blocks}')
                if not rows[b].cross_attention:
                    raise ValueError(f'attention_maps block {b} ({rows[b].name}) has no '
                                     'cross-attention')
        self.attention_map_blocks = tuple(chosen)
        length = self.prompt_embeds.shape[1]
        tokens = tuple(range(length)) if attention_tokens is None else \
            tuple(int(t) for t in attention_tokens)
        bad = [t for t in tokens if not 0 <= t < length]
        if bad or not tokens:
            raise ValueError(f'attention_tokens {list(tokens)} must be token positions in '
                             f'[0, {length})')
        self.attention_tokens = tokens

    def _setup_stride4(self, stride4):
        if stride4 not in STRIDE4_MODES:
            raise ValueError(f'stride4={stride4!r} is not one of {STRIDE4_MODES}')
        self.stride4 = stride4
        self._vae_stride4 = None
        if stride4 == 'vae':
            stride = 1
            for i, block in enumerate(self.vae.encoder.down_blocks):
                if stride == 4:
                    self._vae_stride4 = (i, int(block.resnets[-1].out_channels))
                    break
                if getattr(block, 'downsamplers', None):
                    stride *= 2
            if self._vae_stride4 is None:
                raise ValueError("stride4='vae' needs a VAE encoder with a block at stride 4")
        elif stride4 == 'upsample':
            strides = [self.block_shape(b).stride for b in self.blocks]
            if self._stride_factor not in strides:
                raise ValueError(f"stride4='upsample' needs an output at stride "
                                 f'{self._stride_factor}; the blocks have strides {strides}')

    @property
    def native_resolution(self):
        size = self.vae.config.get('sample_size')
        return int(size) if isinstance(size, int) else None

    # ------------------------------------------------------------------ shapes
    def block_shape(self, block):
        shape = super().block_shape(block)
        if self.block_table.row(block).index in self.attention_map_blocks:
            return ShapeSpec(shape.channels + len(self.attention_tokens), shape.stride)
        return shape

    def output_names(self):
        """``'stride4'`` first where there is such a level, then blocks and taps."""
        return (['stride4'] if self.stride4 else []) + super().output_names()

    def output_shape(self):
        """list[ShapeSpec]: the stride-4 level (if any), then one per block and tap."""
        shapes = super().output_shape()
        if self.stride4 == 'vae':
            shapes.insert(0, ShapeSpec(self._vae_stride4[1], 4))
        elif self.stride4 == 'upsample':
            finest = [s.stride for s in shapes].index(self._stride_factor)
            shapes.insert(0, ShapeSpec(shapes[finest].channels, self._stride_factor // 2))
        return shapes

    def _vae_autocast(self, device_type):
        """Autocast context of the VAE encoder (the backbone's ``dtype``)."""
        return self._autocast(device_type)

    def encode(self, x, stride4=False):
        """Scaled VAE latents of ``x`` (and the VAE's stride-4 feature with ``stride4``).

        Returns:
            Tensor ``(B, 4, H/8, W/8)`` float32 = (posterior mean - shift_factor) *
            scaling_factor; with ``stride4``, a tuple (latents, ``(B, C, H/4, W/4)``).
        """
        store = []
        handle = None
        if stride4:
            block = self.vae.encoder.down_blocks[self._vae_stride4[0]]
            if getattr(block, 'downsamplers', None):
                handle = block.downsamplers[0].register_forward_pre_hook(
                    lambda module, args: store.append(args[0]))
            else:
                handle = block.register_forward_hook(
                    lambda module, args, out: store.append(out))
        try:
            latents = scaled_latents(self.vae, x, self._vae_autocast(x.device.type))
        finally:
            if handle is not None:
                handle.remove()
        return (latents, store[0].float()) if stride4 else latents

    def run_network(self, x_t, t_batch, blocks, injections=None):
        embeds = self.prompt_embeds
        if not torch.is_grad_enabled():   # (a view of a parameter would still require grad)
            embeds = embeds.detach()
        context = embeds.expand(len(t_batch), -1, -1)
        maps_of = [b for b in blocks if b in self.attention_map_blocks]
        feats, maps = self._run_blocks(x_t, t_batch, blocks, context, maps_of,
                                       self._added_conditions(x_t, len(t_batch)))
        tokens = list(self.attention_tokens)
        for block, probs in maps.items():
            feats[block] = torch.cat([feats[block].float(), probs[:, tokens]], dim=1)
        return feats

    def _added_conditions(self, x_t, count):
        """The U-Net's ``added_cond_kwargs`` for ``count`` latents like ``x_t`` (none for SD
        1.x/2.x)."""
        return None

    def forward(self, x):
        """``(B, 3, H, W)`` in [-1, 1] -> tuple of fused features (stride-4 level first)."""
        self._check_image(x)
        if self.stride4 == 'vae':
            latents, level4 = self.encode(x, stride4=True)
        else:
            latents, level4 = self.encode(x), None
        feats = self._intermediates_of(x, latents, None, None, None, None)
        outs = [self.fuse(feats[b]) for b in super().output_names()]
        if self.stride4 == 'upsample':
            finest = [self.block_shape(b).stride for b in self.blocks].index(self._stride_factor)
            level4 = F.interpolate(outs[finest], scale_factor=2, mode='bilinear',
                                   align_corners=False)
        if level4 is not None:
            outs.insert(0, level4)
        return tuple(outs)
