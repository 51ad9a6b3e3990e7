"""Block tables of any diffusion backbone, for ``tools/print_blocks.py``.

The table printed is the backbone's own :class:`~mmdiffssl.models.backbones.BlockTable`,
built on the meta device (:func:`~mmdiffssl.models.backbones.base.shapes_only`: no weights
read), with each block's parameters and what a frozen run stopping at that block keeps.
"""
from mmengine.registry import MODELS

from mmdiffssl.models.backbones.base import shapes_only


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
        kept_always = MODELS.build(dict(cfg, blocks='all'))   # pruned: no output layers
    table = backbone.block_table
    network = backbone.network_attr + '.'

    def split(model):
        per_block, outside = {row.index: 0 for row in table}, 0
        for name, param in model.named_parameters():
            if name.startswith(network):
                index = table.block_of(name)
                if index is None:
                    outside += param.numel()
                else:
                    per_block[index] += param.numel()
        return per_block, outside

    params, outside = split(backbone)
    _, stem = split(kept_always)
    bytes_per = 2 if backbone.frozen_dtype == 'bf16' else 4
    kept, extra = stem, {'title': '      params  frozen run stopping here keeps'}
    for row in table:
        kept += params[row.index]
        extra[row.index] = f'{params[row.index]:>12,}  {kept * bytes_per / 2**20:>9.1f} MiB'
    size = size or _native_size(backbone)
    total = outside + sum(params.values())
    lines = [f'{type(backbone).__name__} ({backbone.family}): {len(table)} blocks, '
             f'{total:,} network parameters ({stem:,} in the stem and embeddings, '
             f'{outside - stem:,} in the output layers, which a backbone never keeps)']
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


def tap_lines(cfg, block, size=None):
    """Lines listing the tappable modules of one block: path, type, output shape (one image
    at ``size`` px, from a meta-device run) and the attention parts where it has them.

    Args:
        cfg (dict): a diffusion backbone config.
        block (int | str): the block's number or module name.
        size (int, optional): input side; default the native resolution.
    """
    import torch

    from mmdiffssl.models.backbones.taps import tappable
    with shapes_only():
        backbone = MODELS.build(dict(cfg, blocks='all', prune=False))
    row = backbone.block_table.row(block)
    network = backbone.network
    paths = tappable(network, row)
    shapes, handles = {}, []
    for path in paths:
        def hook(module, args, out, path=path):
            out = out[0] if isinstance(out, (tuple, list)) else getattr(out, 'sample', out)
            shapes[path] = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        handles.append(network.get_submodule(path).register_forward_hook(hook))
    size = size or _native_size(backbone)
    try:
        backbone.shape_run(size, (row.index, ))
    finally:
        for handle in handles:
            handle.remove()
    lines = [f'block {row.index} ({row.name}, {row.kind}): tappable modules, output shape of '
             f'one image at {size}px']
    for path in paths:
        module = network.get_submodule(path)
        parts = ('  + :q :k :v :attn' if backbone._attention_kind(module) == 'self' else
                 '  + :q :attn' if backbone._attention_kind(module) == 'cross' else '')
        lines.append(f'  {path:<48} {type(module).__name__:<22} '
                     f'{str(shapes.get(path, "not run")):<20}{parts}')
    return lines
