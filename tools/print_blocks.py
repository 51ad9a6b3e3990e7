"""Print the block table (block, kind, channels, stride) of an ADM arch.

    python tools/print_blocks.py adm-256-uncond
    python tools/print_blocks.py configs/_base_/models/adm-tiny_32px.py [--image-size 32]

The argument is a preset name, or a config file whose ``model.backbone.arch`` (or its only
dict of guided-diffusion flags) describes the arch. Strides are input size / feature size.
"""
import argparse
import os.path as osp

import torch

from mmengine.config import Config

from mmdiffssl.models.unets import ADM_PRESETS, adm_flags_from, build_adm_unet


def arch_from_argument(value):
    """A preset name, or the arch found in a config file."""
    if not value.endswith('.py'):
        return value
    if not osp.isfile(value):
        raise FileNotFoundError(f'config file not found: {value}')
    cfg = Config.fromfile(value)
    backbone = cfg.get('model', {}).get('backbone', {})
    if 'arch' in backbone:
        return backbone['arch']
    dicts = [v for v in cfg.to_dict().values() if isinstance(v, dict)]
    if len(dicts) != 1:
        raise ValueError(f'{value} has no model.backbone.arch and not exactly one flags dict')
    return dicts[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('arch', help=f'preset ({", ".join(ADM_PRESETS)}) or a config file')
    args = parser.parse_args()
    flags = adm_flags_from(arch_from_argument(args.arch))
    with torch.device('meta'):  # shapes only: no memory, no init time
        unet = build_adm_unet(flags)
    size = flags['image_size']
    print(f'{"block":>5}  {"kind":<6}  {"channels":>8}  {"stride":>6}  {f"size at {size}px":>14}')
    for spec in unet.block_specs():
        side = size // spec.stride
        print(f'{spec.index:>5}  {spec.kind:<6}  {spec.channels:>8}  {spec.stride:>6}  '
              f'{f"{side}x{side}":>14}')
    print(f'{unet.out_index:>5}  {"out":<6}  {unet.out[-1].out_channels:>8}  '
          f'{1:>6}  {f"{size}x{size}":>14}')


if __name__ == '__main__':
    main()
