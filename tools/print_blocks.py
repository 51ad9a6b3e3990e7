"""Print the block table (block, kind, channels, stride) of an ADM arch.

    python tools/print_blocks.py adm-256-uncond
    python tools/print_blocks.py configs/_base_/models/adm-tiny_32px.py
    python tools/print_blocks.py '{"image_size": 32, "num_channels": 32, "channel_mult": "1,2"}'

The argument is a preset name, a JSON dict of guided-diffusion flags, or a config file whose
``model.backbone.arch`` (or its only dict of flags) describes the arch. Strides are input
size / feature size; sizes are given at the arch's ``image_size``.
"""
import argparse

import torch

from mmdiffssl.apis.features import arch_from_argument
from mmdiffssl.models.unets import ADM_PRESETS, adm_flags_from, build_adm_unet


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('arch', help=f'preset ({", ".join(ADM_PRESETS)}), JSON flags or config')
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
    print(f'{unet.out_index:>5}  {"out":<6}  {unet.out_channels:>8}  {1:>6}  '
          f'{f"{size}x{size}":>14}')


if __name__ == '__main__':
    main()
