"""Guided-diffusion flags of OpenAI's published ADM checkpoints.

Architectures are described with guided-diffusion's own command-line flag
names (``num_channels``, ``attention_resolutions='32,16,8'``, ...), so flags
copied from its README work unchanged. :func:`adm_flags_from` resolves a
preset name / flag dict into a complete flag dict and :func:`build_adm_unet`
turns it into an :class:`~mmdiffssl.models.unets.adm.ADMUNet` exactly as
``guided_diffusion.script_util.create_model`` builds a ``UNetModel``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence, Union

from .adm import ADMUNet

#: Classes of the class-conditional (ImageNet) checkpoints.
NUM_CLASSES = 1000

#: guided-diffusion's ``model_and_diffusion_defaults()``: every flag name
#: accepted here, with its default. ``use_fp16``/``use_checkpoint`` and the
#: diffusion-only flags are accepted for compatibility but do not change the
#: module built by :func:`build_adm_unet`.
GUIDED_DIFFUSION_DEFAULTS: dict[str, Any] = dict(
    image_size=64,
    num_channels=128,
    num_res_blocks=2,
    num_heads=4,
    num_heads_upsample=-1,
    num_head_channels=-1,
    attention_resolutions='16,8',
    channel_mult='',
    dropout=0.0,
    class_cond=False,
    use_checkpoint=False,
    use_scale_shift_norm=True,
    resblock_updown=False,
    use_fp16=False,
    use_new_attention_order=False,
    learn_sigma=False,
    diffusion_steps=1000,
    noise_schedule='linear',
    timestep_respacing='',
    use_kl=False,
    predict_xstart=False,
    rescale_timesteps=False,
    rescale_learned_sigmas=False,
)


def _lsun_flags() -> dict[str, Any]:
    """``MODEL_FLAGS`` shared by the LSUN bedroom / cat / horse models."""
    return dict(attention_resolutions='32,16,8', class_cond=False,
                diffusion_steps=1000, dropout=0.1, image_size=256,
                learn_sigma=True, noise_schedule='linear', num_channels=256,
                num_head_channels=64, num_res_blocks=2, resblock_updown=True,
                use_fp16=True, use_scale_shift_norm=True)


#: ``MODEL_FLAGS`` of each published diffusion checkpoint, as given in the
#: guided-diffusion README (flags not listed take their default).
ADM_PRESETS: dict[str, dict[str, Any]] = {
    'adm-64-cond': dict(
        attention_resolutions='32,16,8', class_cond=True,
        diffusion_steps=1000, dropout=0.1, image_size=64, learn_sigma=True,
        noise_schedule='cosine', num_channels=192, num_head_channels=64,
        num_res_blocks=3, resblock_updown=True, use_new_attention_order=True,
        use_fp16=True, use_scale_shift_norm=True),
    'adm-128-cond': dict(
        attention_resolutions='32,16,8', class_cond=True,
        diffusion_steps=1000, image_size=128, learn_sigma=True,
        noise_schedule='linear', num_channels=256, num_heads=4,
        num_res_blocks=2, resblock_updown=True, use_fp16=True,
        use_scale_shift_norm=True),
    'adm-256-cond': dict(
        attention_resolutions='32,16,8', class_cond=True,
        diffusion_steps=1000, image_size=256, learn_sigma=True,
        noise_schedule='linear', num_channels=256, num_head_channels=64,
        num_res_blocks=2, resblock_updown=True, use_fp16=True,
        use_scale_shift_norm=True),
    'adm-256-uncond': dict(
        attention_resolutions='32,16,8', class_cond=False,
        diffusion_steps=1000, image_size=256, learn_sigma=True,
        noise_schedule='linear', num_channels=256, num_head_channels=64,
        num_res_blocks=2, resblock_updown=True, use_fp16=True,
        use_scale_shift_norm=True),
    'adm-512-cond': dict(
        attention_resolutions='32,16,8', class_cond=True,
        diffusion_steps=1000, image_size=512, learn_sigma=True,
        noise_schedule='linear', num_channels=256, num_head_channels=64,
        num_res_blocks=2, resblock_updown=True, use_fp16=False,
        use_scale_shift_norm=True),
    'adm-lsun-bedroom': _lsun_flags(),
    'adm-lsun-cat': _lsun_flags(),
    'adm-lsun-horse': _lsun_flags(),
    'adm-lsun-horse-nodropout': dict(_lsun_flags(), dropout=0.0),
}

#: Published file name of each preset's checkpoint
#: (``https://openaipublic.blob.core.windows.net/diffusion/jul-2021/<name>``).
ADM_CHECKPOINT_NAMES: dict[str, str] = {
    'adm-64-cond': '64x64_diffusion.pt',
    'adm-128-cond': '128x128_diffusion.pt',
    'adm-256-cond': '256x256_diffusion.pt',
    'adm-256-uncond': '256x256_diffusion_uncond.pt',
    'adm-512-cond': '512x512_diffusion.pt',
    'adm-lsun-bedroom': 'lsun_bedroom.pt',
    'adm-lsun-cat': 'lsun_cat.pt',
    'adm-lsun-horse': 'lsun_horse.pt',
    'adm-lsun-horse-nodropout': 'lsun_horse_nodropout.pt',
}

#: ``create_model``'s channel multipliers for ``channel_mult=''``.
DEFAULT_CHANNEL_MULT: dict[int, tuple[float, ...]] = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}

Arch = Union[str, Mapping[str, Any]]


def _preset(name: str) -> dict[str, Any]:
    if name not in ADM_PRESETS:
        raise ValueError(f'unknown ADM preset {name!r}; available presets: '
                         f'{", ".join(sorted(ADM_PRESETS))}')
    return dict(ADM_PRESETS[name])


def adm_flags_from(arch: Arch) -> dict[str, Any]:
    """Resolve an architecture description into complete guided-diffusion
    flags.

    Args:
        arch: a preset name from :data:`ADM_PRESETS`; or a mapping of
            guided-diffusion flags; or such a mapping with a ``preset`` key
            whose flags the other entries override (e.g.
            ``dict(preset='adm-256-uncond', num_channels=64)``).

    Returns:
        A new dict with every key of :data:`GUIDED_DIFFUSION_DEFAULTS`;
        flags not given take guided-diffusion's defaults.

    Raises:
        ValueError: unknown preset (lists the presets) or unknown flag (lists
            the accepted flags).
        TypeError: ``arch`` is neither a string nor a mapping.
    """
    if isinstance(arch, str):
        given = _preset(arch)
    elif isinstance(arch, Mapping):
        given = dict(arch)
        if 'preset' in given:
            given = dict(_preset(given.pop('preset')), **given)
    else:
        raise TypeError('arch must be a preset name or a mapping of '
                        f'guided-diffusion flags, got {type(arch).__name__}')
    unknown = sorted(set(given) - set(GUIDED_DIFFUSION_DEFAULTS))
    if unknown:
        raise ValueError(
            f'unknown guided-diffusion flag(s) {unknown}; accepted flags: '
            f'preset, {", ".join(GUIDED_DIFFUSION_DEFAULTS)}')
    return {**GUIDED_DIFFUSION_DEFAULTS, **given}


def _parse_numbers(value: Union[str, Sequence[float]]) -> tuple[float, ...]:
    """``'1,2,2'`` or ``(1, 2, 2)`` -> ``(1, 2, 2)`` (ints where integral)."""
    items = value.split(',') if isinstance(value, str) else value
    numbers = tuple(float(item) for item in items)
    return tuple(int(n) if n.is_integer() else n for n in numbers)


def _channel_mult(value: Union[str, Sequence[float]],
                  image_size: int) -> tuple[float, ...]:
    if value == '':
        if image_size not in DEFAULT_CHANNEL_MULT:
            raise ValueError(
                f'no default channel_mult for image_size={image_size} '
                f'(defaults exist for {sorted(DEFAULT_CHANNEL_MULT)}); '
                'pass channel_mult explicitly')
        return DEFAULT_CHANNEL_MULT[image_size]
    return _parse_numbers(value)


def build_adm_unet(arch: Arch) -> ADMUNet:
    """Build an :class:`ADMUNet` like guided-diffusion's ``create_model``.

    Args:
        arch: anything :func:`adm_flags_from` accepts.

    Translation (as in ``create_model``): ``attention_resolutions`` (a
    ``'32,16,8'`` string or a sequence of feature resolutions) becomes
    downsample rates ``image_size // res``; ``channel_mult=''`` picks the
    per-``image_size`` default (a ``'1,2,2'`` string or a tuple is used as
    given); 3 input channels; ``out_channels`` is 6 if ``learn_sigma`` else 3;
    ``num_classes`` is 1000 if ``class_cond``.
    """
    flags = adm_flags_from(arch)
    image_size = flags['image_size']
    attention_ds = tuple(
        image_size // int(res)
        for res in _parse_numbers(flags['attention_resolutions']))
    return ADMUNet(
        image_size=image_size,
        in_channels=3,
        model_channels=flags['num_channels'],
        out_channels=6 if flags['learn_sigma'] else 3,
        num_res_blocks=flags['num_res_blocks'],
        attention_resolutions=attention_ds,
        dropout=flags['dropout'],
        channel_mult=_channel_mult(flags['channel_mult'], image_size),
        num_classes=NUM_CLASSES if flags['class_cond'] else None,
        num_heads=flags['num_heads'],
        num_head_channels=flags['num_head_channels'],
        num_heads_upsample=flags['num_heads_upsample'],
        use_scale_shift_norm=flags['use_scale_shift_norm'],
        resblock_updown=flags['resblock_updown'],
        use_new_attention_order=flags['use_new_attention_order'],
    )
