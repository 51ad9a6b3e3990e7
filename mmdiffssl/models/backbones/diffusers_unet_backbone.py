"""DiffusersUNetBackbone: a pixel-space diffusers ``UNet2DModel`` (DDPM) as a feature
extractor, and the parts shared with the latent :class:`~.sd_backbone.SDBackbone`.

The DDPM checkpoints RepFusion distilled from (``google/ddpm-cifar10-32``,
``google/ddpm-ema-celebahq-256``) are diffusers ``UNet2DModel`` folders. Blocks are numbered
as in :mod:`mmdiffssl.models.unets.diffusers_blocks` (``down_blocks.i``, ``mid_block``,
``up_blocks.i``); ``google/ddpm-cifar10-32`` (``block_out_channels`` 128, 256, 256, 256) has
blocks 1-4 (down, strides 1, 2, 4, 8), 5 (mid, stride 8) and 6-9 (up, strides 8, 4, 2, 1).
"""
import os
import os.path as osp


from mmdiffssl.models.unets.diffusers_blocks import (attention_parts, check_supported,
                                                     describe_blocks, forward_intermediates,
                                                     prune_after)
from mmdiffssl.models.unets.diffusers_loading import (DDPM_SCHEDULER,
                                                      component_dir, import_diffusers,
                                                      load_model, read_json, schedule_from_config,
                                                      scheduler_config)

from .base import DiffusionBackbone, file_fingerprint, jsonable, weights_skipped


def use_sdpa(*models):
    """Give every diffusers attention layer of ``models`` the fused SDPA processor
    (``AttnProcessor2_0``, ``F.scaled_dot_product_attention``), diffusers' default with
    torch 2; returns the number of layers that had another processor."""
    from diffusers.models.attention_processor import AttnProcessor2_0
    changed = 0
    for model in models:
        for module in model.modules():
            if hasattr(module, 'set_processor') and hasattr(module, 'processor'):
                if not isinstance(module.processor, AttnProcessor2_0):
                    module.set_processor(AttnProcessor2_0())
                    changed += 1
    return changed


def path_fingerprint(path):
    """Fingerprint of a weights file, or of every file in a folder (names and bytes)."""
    if osp.isfile(path):
        return file_fingerprint(path)
    parts = []
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            full = osp.join(root, name)
            parts.append(f'{osp.relpath(full, path)}={file_fingerprint(full)}')
    return ';'.join(parts)


class DiffusersBackbone(DiffusionBackbone):
    """What the diffusers families share: block table, pruning and the block forward of
    U-Nets (the latent transformers override these), attention taps and the weights
    fingerprint (abstract: a family builds its network in ``_build_network``).

    Blocks are numbered as in :mod:`mmdiffssl.models.unets.diffusers_blocks`; strides are of
    the backbone input (``_stride_factor`` backbone pixels per U-Net input pixel).
    """

    _stride_factor = 1
    #: ``addition_embed_type`` values the family feeds (:func:`check_supported`).
    addition_embed_types = ()

    def _setup_unet(self, unet):
        """Check and prepare the freshly built or loaded U-Net (call in _build_network)."""
        check_supported(unet, self.addition_embed_types)
        if self.with_cp:
            unet.enable_gradient_checkpointing()
        use_sdpa(unet)
        self.unet = unet

    def _describe_blocks(self):
        return describe_blocks(self.unet, 'unet', self._stride_factor)

    def _prune(self, deepest):
        name = self.block_table.row(deepest).name
        resampler = (f'{name}.downsamplers', f'{name}.upsamplers')
        prune_after(self.unet, deepest,
                    keep_resampler=any(t.module.startswith(resampler) for t in self.taps))

    def _attention_kind(self, module):
        if not hasattr(module, 'to_q') or not hasattr(module, 'heads'):
            return None
        return 'cross' if getattr(module, 'is_cross_attention', False) else 'self'

    def _attention_parts(self, module, args, kwargs):
        return attention_parts(module, args, kwargs)

    def _weights_fingerprint(self, components):
        """The files the weights came from (the components' folders, or the single file)."""
        if self.pretrained is None:
            return self.random_weights_key('diffusers-from-config')
        if osp.isdir(self.pretrained):
            return {c: path_fingerprint(component_dir(self.pretrained, c, allow_root=True))
                    for c in components}
        return dict(file=file_fingerprint(self.pretrained),
                    configs={c: path_fingerprint(component_dir(self.config, c,
                                                               allow_root=True))
                             for c in components})

    def _run_blocks(self, x_t, t_batch, blocks, encoder_hidden_states=None, attention_maps=(),
                    added_cond_kwargs=None):
        with self._autocast(x_t.device.type):
            return forward_intermediates(self.unet, x_t, t_batch, blocks,
                                         encoder_hidden_states=encoder_hidden_states,
                                         attention_maps=attention_maps,
                                         added_cond_kwargs=added_cond_kwargs)


class DiffusersUNetBackbone(DiffusersBackbone):
    """Features of a pixel-space diffusers ``UNet2DModel`` at chosen blocks and timesteps.

    Same contract as ``ADMBackbone``: the image (RGB in [-1, 1]) is noised to each timestep
    with q_sample on the model's training schedule, the U-Net runs up to the deepest
    requested block, and each block's feature is returned (timesteps fused).

    Args:
        pretrained (str, optional): a local diffusers folder (a pipeline folder with
            ``unet/``, or a model folder with ``config.json`` at its root), or a single
            weights file of the U-Net in diffusers layout (``.safetensors``/``.bin``) with
            ``config``. See :mod:`mmdiffssl.models.unets.diffusers_loading`.
        config (str, optional): with a single weights file, the local folder holding
            ``unet/config.json`` (or ``config.json``) and optionally the scheduler config.
        unet_config (dict, optional): without ``pretrained``, build a randomly initialised
            ``UNet2DModel`` from this config (smoke tests; seeded by ``init_seed``).
        scheduler (dict, optional): overrides of the training schedule (diffusers scheduler
            keys ``num_train_timesteps``, ``beta_schedule``, ``beta_start``, ``beta_end``);
            by default the folder's scheduler config, else DDPM's linear 1e-4..0.02 over
            1000 steps.
        **kwargs: the arguments every family shares (:class:`~.base.DiffusionBackbone`):
            ``blocks`` (default ``'pyramid'``: every decoder stride, finest first; numbers or
            names such as ``'mid_block'``), ``timesteps`` (default 100), ``noise``,
            ``frozen``, ``with_cp`` (diffusers' gradient checkpointing), ``dtype``, ...

    Shapes:
        input ``(B, C_in, H, W)``, H and W multiples of ``size_divisibility``; output: one
        ``(B, C_i, H / s_i, W / s_i)`` tensor per block (``output_shape()``).
    """

    family = 'diffusers UNet2DModel'

    def __init__(self, pretrained=None, config=None, unet_config=None, scheduler=None,
                 **kwargs):
        self.pretrained, self.config = pretrained, config
        self.unet_config, self.scheduler_overrides = unet_config, scheduler
        super().__init__(**kwargs)

    def _build_network(self):
        self._setup_unet(build_or_load('UNet2DModel', self.pretrained, self.config,
                                       self.unet_config, 'unet', allow_root=True))
        return schedule_from_config(scheduler_config(self.pretrained, self.config,
                                                     self.scheduler_overrides, DDPM_SCHEDULER))

    def weights_fingerprint(self):
        return self._weights_fingerprint(('unet', ))

    def cache_key(self):
        arch = jsonable(dict(self.unet.config))
        return dict(family=self.family, weights=self.weights_fingerprint(),
                    arch=arch, **self.feature_key())

    @property
    def native_resolution(self):
        size = self.unet.config.get('sample_size')
        return int(size) * self._stride_factor if isinstance(size, int) else None

    def _reloaded_modules(self):
        return ('unet', ) if self.frozen and self.pretrained is not None else ()

    @property
    def _input_channels(self):
        return self.unet.config.in_channels

    def _check_input(self, x):
        channels = self.unet.config.in_channels
        if x.shape[1] != channels:
            raise ValueError(f'expected {channels} input channels, got {x.shape[1]} '
                             f'(shape {tuple(x.shape)})')

    def run_network(self, x_t, t_batch, blocks, injections=None):
        return self._run_blocks(x_t, t_batch, blocks)[0]


def build_or_load(cls_name, pretrained, config, model_config, component, allow_root=False,
                  checkpoint=None):
    """Load ``component`` offline from ``pretrained`` or build it from ``model_config``
    (from the folder's config alone inside :func:`~.base.shapes_only`)."""
    if pretrained is not None and weights_skipped():
        folder = pretrained if osp.isdir(pretrained) else config
        model_config = read_json(osp.join(component_dir(folder, component, allow_root),
                                          'config.json'))
        pretrained = None
    if pretrained is None:
        if model_config is None:
            raise ValueError(f'give pretrained= (a local diffusers folder or weights file) or '
                             f'{component}_config= (a {cls_name} config for random weights)')
        cls = getattr(import_diffusers(), cls_name)
        return cls.from_config(dict(model_config)).float().eval()
    if model_config is not None:
        raise ValueError(f'{component}_config is only used without pretrained')
    return load_model(cls_name, pretrained, component, config=config, checkpoint=checkpoint,
                      allow_root=allow_root)


__all__ = ['DiffusersBackbone', 'DiffusersUNetBackbone', 'build_or_load', 'use_sdpa']
