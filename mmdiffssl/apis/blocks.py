"""Block tables of any diffusion backbone, for ``tools/print_blocks.py``.

The table printed is the backbone's own :class:`~mmdiffssl.models.backbones.BlockTable`,
built on the meta device (:func:`~mmdiffssl.models.backbones.base.shapes_only`: no weights
read), with each block's parameters and what a frozen run stopping at that block keeps.
"""
import os.path as osp

from mmengine.registry import MODELS

from mmdiffssl.models.backbones.base import shapes_only

#: Published Stable Diffusion archs printed by name.
SD_NAMES = ('sd-1.x', 'sd-2.x')


def backbone_config(arch):
    """A backbone config for a preset name, JSON flags, a config file, a diffusers folder,
    or ``sd-1.x`` / ``sd-2.x``.

    Args:
        arch (str): an ADM preset or JSON dict of guided-diffusion flags; a config file
            (its ``model.backbone``, or ``model.teacher`` for RepFusion); a local diffusers
            folder (a Stable Diffusion pipeline with ``unet/`` and ``vae/``, or a
            ``UNet2DModel`` folder); or a published SD arch name.

    Returns:
        dict: the config, with ``type``.
    """
    if arch in SD_NAMES:
        from mmdiffssl.models.unets.diffusers_blocks import SD_ARCHS
        return dict(type='SDBackbone', unet_config=SD_ARCHS[arch]['unet'],
                    vae_config=SD_ARCHS[arch]['vae'], text=dict(type='learned', num_tokens=77))
    if osp.isdir(arch):
        if osp.isfile(osp.join(arch, 'vae', 'config.json')):
            return dict(type='SDBackbone', pretrained=arch)
        return dict(type='DiffusersUNetBackbone', pretrained=arch)
    if arch.endswith('.py'):
        from mmengine.config import Config
        if not osp.isfile(arch):
            raise FileNotFoundError(f'config file not found: {arch}')
        model = Config.fromfile(arch).get('model', {})
        for key in ('backbone', 'teacher'):
            cfg = model.get(key)
            if isinstance(cfg, dict) and cfg.get('type') == 'DifFeedBackbone':
                cfg = cfg['backbone']
            if isinstance(cfg, dict) and 'type' in cfg:
                return dict(cfg)
        raise ValueError(f'{arch} has no model.backbone or model.teacher config')
    from .features import arch_from_argument
    return dict(type='ADMBackbone', arch=arch_from_argument(arch))


def block_table_lines(cfg, size=None):
    """Lines of the block table of a backbone config: the table, each block's parameters,
    and the parameter bytes a frozen run stopping after that block keeps.

    Args:
        cfg (dict): a diffusion backbone config (:func:`backbone_config`).
        size (int, optional): input side for the feature sizes; default the model's native
            resolution where it has one (else 256).
    """
    with shapes_only():
        backbone = MODELS.build(dict(cfg, blocks='all', prune=False))
    table = backbone.block_table
    params = {row.index: 0 for row in table}
    stem = 0
    starts = [(row.module + '.', row.index) for row in table]
    network = backbone.network_attr + '.'
    for name, param in backbone.named_parameters():
        if not name.startswith(network):
            continue
        index = next((i for start, i in starts if name.startswith(start)), None)
        if index is None:
            stem += param.numel()
        else:
            params[index] += param.numel()
    bytes_per = 2 if backbone.frozen_dtype == 'bf16' else 4
    kept, extra = stem, {'title': 'params   frozen run stopping here keeps'}
    for row in table:
        kept += params[row.index]
        extra[row.index] = f'{params[row.index]:>10,}  {kept * bytes_per / 2**20:>9.1f} MiB'
    size = size or _native_size(backbone)
    total = stem + sum(params.values())
    lines = [f'{type(backbone).__name__} ({backbone.family}): {len(table)} blocks, '
             f'{total:,} network parameters ({stem:,} outside the blocks: stem, embeddings; '
             'the output layers are never kept)']
    return lines + table.format(size, extra)


def _native_size(backbone):
    flags = getattr(backbone, 'flags', None)
    if flags:
        return int(flags['image_size'])
    vae = getattr(backbone, 'vae', None)
    if vae is not None:
        return int(vae.config.sample_size)
    sample = backbone.unet.config.get('sample_size')
    return int(sample if isinstance(sample, int) else 256)
