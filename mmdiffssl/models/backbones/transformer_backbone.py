"""What the latent diffusion transformers (DiT, PixArt-α/Σ) share: VAE latents, a block table
of transformer blocks, pruning, the block-by-block forward, feature variants and the zeroing
of massive-activation channels (abstract: :class:`~.dit_backbone.DiTBackbone`,
:class:`~.pixart_backbone.PixArtBackbone`).

image (B, 3, H, W) in [-1, 1]
  -> VAE latents (B, 4, H/8, W/8) (:mod:`.latent_vae`), noised to each timestep
  -> patch embedding + 2-D sin-cos positions -> tokens (N, h * w, D), h = H / (8 p)
  -> transformer blocks 1..L (diffusers' ``transformer_blocks.0..L-1``), run up to the
     deepest requested block, each conditioned by its family (DiT: timestep and class label;
     PixArt: timestep, text embeddings, resolution)
  -> one feature per block, tokens folded to a map ``(N, D, h, w)``: stride ``8 p`` (16 for
     DiT-XL/2 and PixArt's p = 2), ``D`` channels for every block (1152 for both XL models).

Feature variants (``feature=``):

- ``'raw'``: the block's output tokens.
- ``'modulated'``: the block's output as the next block sees it:
  ``LayerNorm(x) * (1 + scale) + shift`` with the next block's attention adaLN parameters
  (its ``shift_msa``, ``scale_msa`` at the same timestep and condition), the final layer's
  (``norm_out`` and its shift/scale) for the last block. DiTF found raw FLUX block features
  weak until modulated this way. The next block's modulation layers are kept after pruning
  (its attention and MLP are not).

``massive_channels=dict(k=100)`` zeroes, per block, the channels whose activation exceeds
``k`` times the median absolute activation of that block's feature anywhere on a calibration
batch (the first batch the block is computed on, or :meth:`calibrate_massive_channels`); the
chosen channels are a buffer of the backbone (they travel in run checkpoints and the cache
key).

Positional embeddings at other input sizes: diffusers' ``PatchEmbed`` recomputes the 2-D
sin-cos grid for the new token grid with positions rescaled to the training grid
(``base_size``), i.e. the embedding is interpolated, not cropped; every other token of a
2x larger input has the native embedding exactly.
"""
import os.path as osp
from abc import abstractmethod

import torch
from torch.utils.checkpoint import checkpoint

from mmdiffssl.models.unets.diffusers_loading import (DDPM_SCHEDULER, check_pretrained,
                                                      component_dir, read_json,
                                                      schedule_from_config, scheduler_config)

from .base import BlockInfo, jsonable
from .diffusers_unet_backbone import DiffusersBackbone, build_or_load, use_sdpa
from .latent_vae import LatentVAEMixin, build_vae, scaled_latents, vae_downsampling

FEATURE_VARIANTS = ('raw', 'modulated')
TRANSFORMER_FEATURES = {
    'raw': "the block's output tokens, folded to a map",
    'modulated': "LayerNorm(x) * (1 + scale_msa) + shift_msa of the block's output x with the "
                 "next block's adaLN (the final layer's for the last block), folded to a map",
}


def tokens_to_map(tokens, height, width):
    """``(N, h * w, D)`` tokens -> ``(N, D, h, w)``."""
    return tokens.transpose(1, 2).unflatten(-1, (height, width))


class LatentTransformerBackbone(LatentVAEMixin, DiffusersBackbone):
    """Features of a latent diffusion transformer at chosen blocks and timesteps (abstract).

    Args:
        pretrained (str, optional): a local diffusers folder (``transformer/``, ``vae/``,
            ``scheduler/``), or a family's single weights file with ``config``.
        config (str, optional): with a single file, a local diffusers folder holding the
            component configs and the VAE weights (``vae/``).
        transformer_config, vae_config (dict, optional): without ``pretrained``, random
            models from these diffusers configs (smoke tests; seeded by ``init_seed``).
        scheduler (dict, optional): overrides of the training schedule; default the folder's
            scheduler config, else DDPM's linear 1e-4..0.02 over 1000 steps (DiT's and
            PixArt's training schedule).
        feature (str): ``'raw'`` or ``'modulated'`` (see the module docstring).
        massive_channels (dict, optional): ``dict(k=100.0)`` zeroes massive-activation
            channels (see the module docstring); None keeps every channel.
        **kwargs: the arguments every family shares (:class:`~.base.DiffusionBackbone`);
            ``blocks`` defaults to the middle block, ``timesteps`` to 100.

    Shapes:
        input ``(B, 3, H, W)``, H and W multiples of ``8 p``; output one
        ``(B, D * T, H / (8 p), W / (8 p))`` map per block ('concat' of T timesteps).
    """

    network_attr = 'transformer'
    #: the diffusers class of the family's transformer and the config ``norm_type`` it has
    #: (hub configs name the class ``Transformer2DModel``; diffusers remaps it by norm_type).
    transformer_class = None
    norm_type = None
    #: children of a block its modulation needs (kept on the block after the deepest).
    modulation_children = ('norm1', )
    #: attributes of the model used only by the last block's modulated feature.
    final_modulation = ()
    #: attributes of the model that never run (output projection).
    output_layers = ()

    def __init__(self, pretrained=None, config=None, transformer_config=None, vae_config=None,
                 scheduler=None, feature='raw', massive_channels=None, **kwargs):
        if feature not in FEATURE_VARIANTS:
            raise ValueError(f'feature={feature!r} is not one of {FEATURE_VARIANTS}')
        self.pretrained, self.config = pretrained, config
        self.transformer_config, self.vae_config = transformer_config, vae_config
        self.scheduler_overrides = scheduler
        self.feature = feature
        self.massive_k = self._check_massive(massive_channels)
        super().__init__(**kwargs)
        width = self.block_table[0].channels
        self.register_buffer('massive_mask', torch.zeros(len(self.block_table), width,
                                                         dtype=torch.bool))
        self.register_buffer('massive_calibrated', torch.zeros(len(self.block_table),
                                                               dtype=torch.bool))

    @staticmethod
    def _check_massive(massive):
        if massive is None:
            return None
        if not isinstance(massive, dict) or set(massive) - {'k'}:
            raise ValueError(f'massive_channels={massive!r} is not allowed: give dict(k=...) '
                             'or None')
        k = massive.get('k', 100.0)
        if isinstance(k, bool) or not isinstance(k, (int, float)) or k <= 1:
            raise ValueError(f'massive_channels k={k!r} must be a number > 1')
        return float(k)

    # ------------------------------------------------------------------ construction
    @property
    def default_blocks(self):
        """The middle block."""
        return (max(1, len(self.block_table) // 2), )

    def _build_network(self):
        layout = None
        if self.pretrained is not None:
            layout = check_pretrained(self.pretrained, self.config, ('transformer', 'vae'))
        # a single file holds the transformer alone: the VAE comes from the config folder
        vae_from = self.config if layout == 'file' else self.pretrained
        self.vae = build_vae(vae_from, None, self.vae_config)
        self._stride_factor = vae_downsampling(self.vae)
        self._check_transformer_config(layout)
        transformer = self._load_transformer(layout)
        if transformer.config.in_channels != self.vae.config.latent_channels:
            raise ValueError(f'the transformer takes {transformer.config.in_channels} channels '
                             f'but the VAE makes {self.vae.config.latent_channels}-channel '
                             'latents')
        use_sdpa(transformer)
        self.transformer = transformer
        return schedule_from_config(scheduler_config(self.pretrained, self.config,
                                                     self.scheduler_overrides, DDPM_SCHEDULER))

    def _check_transformer_config(self, layout):
        """Refuse a transformer config of another family (by its ``norm_type``)."""
        cfg = self.transformer_config
        if cfg is None and self.pretrained is not None:
            folder = self.config if layout == 'file' else self.pretrained
            cfg = read_json(osp.join(component_dir(folder, 'transformer'), 'config.json'))
        if cfg is not None and cfg.get('norm_type') != self.norm_type:
            raise ValueError(f"{self.family} needs a transformer with norm_type="
                             f"'{self.norm_type}' ({self.transformer_class}); this config has "
                             f"norm_type={cfg.get('norm_type')!r} "
                             f"(_class_name {cfg.get('_class_name')!r})")

    def _load_transformer(self, layout):
        """The diffusers transformer of a folder (or of ``transformer_config``); families
        with their own single-file layout override."""
        return build_or_load(self.transformer_class, self.pretrained, self.config,
                             self.transformer_config, 'transformer')

    @property
    def patch_size(self):
        return int(self.transformer.config.patch_size)

    def _describe_blocks(self):
        stride = self._stride_factor * self.patch_size
        width = int(self.transformer.config.num_attention_heads *
                    self.transformer.config.attention_head_dim)
        return [BlockInfo(i, f'transformer_blocks.{i - 1}', f'transformer.transformer_blocks.'
                          f'{i - 1}', 'middle', width, stride, TRANSFORMER_FEATURES[self.feature],
                          getattr(block, 'attn2', None) is not None)
                for i, block in enumerate(self.transformer.transformer_blocks, start=1)]

    def _prune(self, deepest):
        model = self.transformer
        depth = len(model.transformer_blocks)
        keep_next = self.feature == 'modulated' and deepest < depth
        model.transformer_blocks = model.transformer_blocks[:deepest + keep_next]
        if keep_next:
            block = model.transformer_blocks[-1]
            for name, _ in list(block.named_children()):
                if name not in self.modulation_children:
                    setattr(block, name, None)
        dropped = self.output_layers
        if not (self.feature == 'modulated' and deepest == depth):
            dropped += self.final_modulation
        for name in dropped:
            setattr(model, name, None)

    def weights_fingerprint(self):
        return self._weights_fingerprint(('transformer', 'vae'))

    def cache_key(self):
        massive = None
        if self.massive_k is not None:
            calibrated = [b for b in self.blocks if self.massive_calibrated[b - 1]]
            massive = dict(k=self.massive_k, channels={
                b: torch.nonzero(self.massive_mask[b - 1]).flatten().tolist()
                for b in calibrated})
        return dict(family=self.family, weights=self.weights_fingerprint(),
                    arch=dict(transformer=jsonable(dict(self.transformer.config)),
                              vae=jsonable(dict(self.vae.config))),
                    feature=self.feature, massive=massive, **self.condition_key(),
                    **self.feature_key())

    def condition_key(self):
        """The family's conditioning, for :meth:`cache_key`."""
        return {}

    @property
    def native_resolution(self):
        size = self.transformer.config.get('sample_size')
        return int(size) * self._stride_factor if isinstance(size, int) else None

    def encode(self, x):
        """Scaled VAE latents ``(B, 4, H/8, W/8)`` float32 (:func:`scaled_latents`)."""
        return scaled_latents(self.vae, x, self._autocast(x.device.type))

    # ------------------------------------------------------------------ forward
    @abstractmethod
    def _conditioning(self, x_t, t_batch):
        """The family's per-run conditioning (passed to :meth:`_block_kwargs` and
        :meth:`_modulate`)."""

    @abstractmethod
    def _block_kwargs(self, cond):
        """Keyword arguments of each ``transformer_blocks.i`` call."""

    @abstractmethod
    def _modulate(self, index, tokens, cond):
        """The ``'modulated'`` feature of block ``index`` (1-based) from its output tokens
        ``(N, T, D)``: the next block's (or the final layer's) adaLN applied to them."""

    def run_network(self, x_t, t_batch, blocks, injections=None):
        model = self.transformer
        height, width = x_t.shape[-2] // self.patch_size, x_t.shape[-1] // self.patch_size
        feats = {}
        with self._autocast(x_t.device.type):
            tokens = model.pos_embed(x_t)
            cond = self._conditioning(x_t, t_batch)
            kwargs = self._block_kwargs(cond)
            for index in range(1, max(blocks) + 1):
                block = model.transformer_blocks[index - 1]
                if self.with_cp and torch.is_grad_enabled():
                    tokens = checkpoint(lambda h, b=block: b(h, **kwargs), tokens,
                                        use_reentrant=False)
                else:
                    tokens = block(tokens, **kwargs)
                if index in blocks:
                    feat = tokens if self.feature == 'raw' else \
                        self._modulate(index, tokens, cond)
                    feats[index] = tokens_to_map(feat, height, width)
        if self.massive_k is not None:
            feats = self._zero_massive(feats)
        return feats

    # ------------------------------------------------------------------ massive channels
    def massive_channels_of(self, feature):
        """Channel mask ``(D,)`` of one block's ``(N, D, h, w)`` feature: True where some
        activation exceeds ``k`` times the median absolute activation."""
        magnitude = feature.detach().float().abs()
        peak = magnitude.transpose(0, 1).flatten(1).amax(1)
        return peak > self.massive_k * magnitude.median()

    def _zero_massive(self, feats):
        from torch._subclasses.fake_tensor import is_fake
        out = {}
        for block, feat in feats.items():
            if feat.is_meta or is_fake(feat):   # shape-only runs
                out[block] = feat
                continue
            if not self.massive_calibrated[block - 1]:
                self.massive_mask[block - 1] = self.massive_channels_of(feat)
                self.massive_calibrated[block - 1] = True
            keep = (~self.massive_mask[block - 1]).to(feat.dtype)
            out[block] = feat * keep[None, :, None, None]
        return out

    def calibrate_massive_channels(self, x, blocks=None):
        """Choose the massive channels of ``blocks`` (default the backbone's) on the image
        batch ``x`` ``(B, 3, H, W)``, at the backbone's timesteps (noise as configured).

        Returns:
            dict[int, list[int]]: block -> zeroed channels.
        """
        if self.massive_k is None:
            raise ValueError('massive_channels is None: build the backbone with '
                             'massive_channels=dict(k=...) to zero massive channels')
        blocks = self.blocks if blocks is None else self.block_table.resolve(blocks)
        for block in blocks:
            self.massive_calibrated[block - 1] = False
        with torch.no_grad():
            self.intermediates(x, blocks=blocks)
        return {b: torch.nonzero(self.massive_mask[b - 1]).flatten().tolist() for b in blocks}


__all__ = ['FEATURE_VARIANTS', 'LatentTransformerBackbone', 'tokens_to_map']
