"""DiffusersUNetBackbone: a pixel-space diffusers ``UNet2DModel`` (DDPM) as a feature
extractor, and the parts shared with the latent :class:`~.sd_backbone.SDBackbone`.

The DDPM checkpoints RepFusion distilled from (``google/ddpm-cifar10-32``,
``google/ddpm-ema-celebahq-256``) are diffusers ``UNet2DModel`` folders. Blocks are numbered
as in :mod:`mmdiffssl.models.unets.diffusers_blocks` (``down_blocks.i``, ``mid_block``,
``up_blocks.i``); ``google/ddpm-cifar10-32`` (``block_out_channels`` 128, 256, 256, 256) has
blocks 1-4 (down, strides 1, 2, 4, 8), 5 (mid, stride 8) and 6-9 (up, strides 8, 4, 2, 1).
"""
from mmengine.registry import MODELS

from mmdiffssl.models.unets.diffusers_blocks import (block_specs, check_supported,
                                                     forward_intermediates, frozen_prefixes,
                                                     resolve_blocks, size_divisor)
from mmdiffssl.models.unets.diffusers_loading import (DDPM_SCHEDULER, import_diffusers,
                                                      load_model, schedule_from_config,
                                                      scheduler_config)

from .base import DiffusionBackbone, ShapeSpec


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


class DiffusersBackboneMixin:
    """What the diffusers backbones share: block table, freezing, the block forward.

    Needs ``self.unet``, ``self.blocks``, ``self.frozen`` and ``self._stride_factor`` (input
    stride of one U-Net input pixel: 1 in pixel space, the VAE's factor for latents).
    """

    def _setup_unet(self, unet, blocks, pyramid_strides, frozen, with_cp):
        check_supported(unet)
        self.unet = unet
        self._specs = block_specs(unet)
        self.blocks = resolve_blocks(blocks, self._specs, pyramid_strides, self._stride_factor)
        self.frozen = bool(frozen)
        self.with_cp = bool(with_cp)
        if self.with_cp:
            unet.enable_gradient_checkpointing()
        use_sdpa(unet)
        self._freeze_unet()

    def block_specs(self):
        """list[DiffusersBlockSpec] with strides of the backbone input (the image)."""
        return [type(s)(s.index, s.name, s.kind, s.channels, s.stride * self._stride_factor,
                        s.cross_attention) for s in self._specs]

    def block_shape(self, block):
        spec = self._specs[block - 1]
        return ShapeSpec(spec.channels, spec.stride * self._stride_factor)

    @property
    def size_divisor(self):
        """Input height and width must be multiples of this."""
        return size_divisor(self.unet) * self._stride_factor

    def _frozen_unet_prefixes(self):
        if self.frozen:
            return ('', )
        return frozen_prefixes(self.unet, max(self.blocks))

    def _freeze_unet(self):
        prefixes = self._frozen_unet_prefixes()
        for name, param in self.unet.named_parameters():
            if name.startswith(prefixes):
                param.requires_grad_(False)

    def _train_unet(self):
        prefixes = self._frozen_unet_prefixes()
        for name, module in self.unet.named_modules():
            if name and (name + '.').startswith(prefixes):
                module.eval()
        if self.frozen:
            self.unet.eval()

    def _check_size(self, x, what='image'):
        divisor = self.size_divisor
        height, width = x.shape[-2:]
        if height % divisor or width % divisor:
            raise ValueError(f'{what} size {height}x{width} is not divisible by {divisor}, the '
                             f'total downsampling of this model{self._divisor_detail()}: pad '
                             f'or resize to multiples of {divisor}')

    def _divisor_detail(self):
        return ''

    def _run_blocks(self, x_t, t_batch, blocks, encoder_hidden_states=None, attention_maps=()):
        with self._autocast(x_t.device.type):
            return forward_intermediates(self.unet, x_t, t_batch, blocks,
                                         encoder_hidden_states=encoder_hidden_states,
                                         attention_maps=attention_maps)


@MODELS.register_module()
class DiffusersUNetBackbone(DiffusersBackboneMixin, DiffusionBackbone):
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
            ``UNet2DModel`` from this config (smoke tests).
        scheduler (dict, optional): overrides of the training schedule (diffusers scheduler
            keys ``num_train_timesteps``, ``beta_schedule``, ``beta_start``, ``beta_end``);
            by default the folder's scheduler config, else DDPM's linear 1e-4..0.02 over
            1000 steps.
        blocks (Sequence[int | str] | str): block numbers or module names (see
            :mod:`mmdiffssl.models.unets.diffusers_blocks`), or ``'pyramid'``: the last
            decoder block at each of ``pyramid_strides``.
        timesteps (Sequence[int]): training timesteps in [0, num_train_timesteps).
        noise, noise_seed, ensemble_size, fuse_timesteps: as ``ADMBackbone``.
        pyramid_strides (Sequence[int], optional): strides for ``blocks='pyramid'``; None
            for every decoder stride, finest first.
        frozen (bool): the U-Net never trains (no grad, eval mode, no graph). With False it
            trains, except the blocks after the deepest requested one, that block's
            resampler and the output layers, which the forward does not use.
        with_cp (bool): diffusers' gradient checkpointing of the U-Net blocks.
        dtype (str): 'fp32', 'bf16' or 'fp16' autocast.
        init_cfg (dict, optional): mmengine init config.

    Shapes:
        input ``(B, C_in, H, W)``, H and W multiples of ``size_divisor``; output: one
        ``(B, C_i, H / s_i, W / s_i)`` tensor per block (``output_shape()``).
    """

    def __init__(self,
                 pretrained=None,
                 config=None,
                 unet_config=None,
                 scheduler=None,
                 blocks='pyramid',
                 timesteps=(100, ),
                 noise='fixed',
                 noise_seed=0,
                 ensemble_size=4,
                 fuse_timesteps='concat',
                 pyramid_strides=None,
                 frozen=True,
                 with_cp=False,
                 dtype='fp32',
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self._stride_factor = 1
        self.pretrained = pretrained
        unet = build_or_load('UNet2DModel', pretrained, config, unet_config, 'unet',
                             allow_root=True)
        self.schedule = schedule_from_config(
            scheduler_config(pretrained, config, scheduler, DDPM_SCHEDULER))
        self._setup_noise(noise, noise_seed, ensemble_size)
        self._setup_unet(unet, blocks, pyramid_strides, frozen, with_cp)
        self._set_timesteps(timesteps)
        self._set_fuse(fuse_timesteps)
        self._set_dtype(dtype)

    def _reloaded_modules(self):
        return ('unet', ) if self.frozen and self.pretrained is not None else ()

    def train(self, mode=True):
        """Switch train/eval mode; frozen U-Net parts stay in eval mode."""
        super().train(mode)
        self._train_unet()
        return self

    def _check_image(self, x):
        super()._check_image(x)
        channels = self.unet.config.in_channels
        if x.shape[1] != channels:
            raise ValueError(f'expected {channels} input channels, got {x.shape[1]} '
                             f'(shape {tuple(x.shape)})')
        self._check_size(x)

    def _unet_features(self, x_t, t_batch, blocks, injections):
        if injections:
            raise ValueError(f'{type(self).__name__} does not support injections')
        return self._run_blocks(x_t, t_batch, blocks)[0]


def build_or_load(cls_name, pretrained, config, model_config, component, allow_root=False,
                  checkpoint=None):
    """Load ``component`` offline from ``pretrained`` or build it from ``model_config``."""
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


__all__ = ['DiffusersUNetBackbone', 'DiffusersBackboneMixin', 'build_or_load', 'use_sdpa']
