"""Research API: build a diffusion backbone and extract features outside configs.

    >>> from mmdiffssl.apis import build_backbone, extract_features
    >>> bb = build_backbone('adm-256-uncond', checkpoint='256x256_diffusion_uncond.pt',
    ...                     blocks=(24,), timesteps=(150,))
    >>> feats = extract_features(bb, images_uint8)   # images (B, 3, H, W) uint8 RGB
    >>> feats[24].shape                               # (B, 1024, H/16, W/16)
"""
import json
import os.path as osp

import torch

from mmdiffssl.models.backbones import ADMBackbone


def build_backbone(arch, checkpoint=None, **kwargs):
    """An :class:`ADMBackbone` in eval mode; ``kwargs`` are its constructor arguments."""
    return ADMBackbone(arch=arch, checkpoint=checkpoint, **kwargs).eval()


def to_model_range(images):
    """uint8 RGB ``(B, 3, H, W)`` in [0, 255] -> float in [-1, 1]; float input passes as is."""
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    return images


@torch.no_grad()
def extract_features(backbone, images, keys=None):
    """Features of ``images`` at the backbone's blocks, timesteps fused as configured.

    Args:
        backbone (ADMBackbone): the feature extractor.
        images (Tensor): ``(B, 3, H, W)``, uint8 RGB or float in [-1, 1], on the backbone's
            device.
        keys (Tensor, optional): ``(B,)`` image keys for 'fixed' noise.

    Returns:
        dict[int, Tensor]: block -> ``(B, C, H_b, W_b)`` float32.
    """
    feats = backbone.intermediates(to_model_range(images), keys=keys)
    return {b: backbone.fuse(f) for b, f in feats.items()}


def json_dict_argument(value, argument, allowed):
    """``value`` parsed as a JSON dict, or a ValueError naming ``argument``, the value given
    and ``allowed`` (what the argument accepts)."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(f'{argument} {value!r} is not valid JSON ({err.msg} at character '
                         f'{err.pos}): {allowed}') from None
    if not isinstance(parsed, dict):
        raise ValueError(f'{argument} {value!r} is JSON but not a dict: {allowed}')
    return parsed


def arch_from_argument(value, argument='--arch'):
    """An ``arch`` from a command-line string: a preset name, a JSON dict of flags, or a
    config file whose ``model.backbone.arch`` (or its only dict of flags) is the arch.

    Args:
        value (str): the command-line value.
        argument (str): the argument's name, for error messages.

    Raises:
        ValueError: bad JSON, an unknown preset or flag; the message names ``argument``, the
            value given and what is allowed.
        FileNotFoundError: a ``.py`` value that is not a file.
    """
    from mmdiffssl.models.unets import ADM_PRESETS, adm_flags_from
    allowed = (f'give a preset name ({", ".join(ADM_PRESETS)}), a JSON dict of '
               'guided-diffusion flags (e.g. \'{"preset": "adm-256-uncond", "num_channels": '
               '64}\' or \'{"image_size": 32, "num_channels": 32, "channel_mult": "1,2"}\') '
               'or a config file (.py)')
    if value.lstrip().startswith('{'):
        arch = json_dict_argument(value, argument, allowed)
    elif value.endswith('.py'):
        arch = _arch_from_config(value)
    elif value in ADM_PRESETS:
        return value
    else:
        raise ValueError(f'{argument} {value!r} is neither a preset, nor JSON (a dict starts '
                         f'with {{), nor a .py config: {allowed}')
    try:
        adm_flags_from(arch)
    except (ValueError, TypeError) as err:
        raise ValueError(f'{argument} {value!r}: {err}') from None
    return arch


def _arch_from_config(value):
    if not osp.isfile(value):
        raise FileNotFoundError(f'config file not found: {value}')
    from mmengine.config import Config
    cfg = Config.fromfile(value)
    backbone = cfg.get('model', {}).get('backbone', {})
    if 'arch' in backbone:
        return backbone['arch']
    dicts = [v for v in cfg.to_dict().values() if isinstance(v, dict)]
    if len(dicts) != 1:
        raise ValueError(f'{value} has no model.backbone.arch and not exactly one flags dict')
    return dicts[0]
