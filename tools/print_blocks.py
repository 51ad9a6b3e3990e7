"""Print the block table (block, kind, channels, stride) of an ADM or Stable Diffusion arch.

    python tools/print_blocks.py adm-256-uncond
    python tools/print_blocks.py configs/_base_/models/adm-tiny_32px.py
    python tools/print_blocks.py '{"image_size": 32, "num_channels": 32, "channel_mult": "1,2"}'
    python tools/print_blocks.py sd-1.x        # SDBackbone's numbering (needs the sd extra)

The argument is a preset name, a JSON dict of guided-diffusion flags, or a config file whose
``model.backbone.arch`` (or its only dict of flags) describes the arch; or ``sd-1.x`` /
``sd-2.x``. Strides are input image size / feature size; sizes are given at the arch's
image size.
"""
import argparse

import torch

from mmdiffssl.apis.features import arch_from_argument
from mmdiffssl.models.unets import ADM_PRESETS, adm_flags_from, build_adm_unet


def print_sd_blocks(name):
    """SDBackbone's block table for a published SD arch, built on the meta device."""
    from mmdiffssl.models.backbones import SDBackbone
    from mmdiffssl.models.unets.diffusers_blocks import SD_ARCHS, format_block_table
    arch = SD_ARCHS[name]
    with torch.device('meta'):
        backbone = SDBackbone(unet_config=arch['unet'], vae_config=arch['vae'],
                              text=dict(type='learned', num_tokens=77))
    print('\n'.join(format_block_table(backbone.block_specs(), arch['vae']['sample_size'])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('arch', help=f'preset ({", ".join(ADM_PRESETS)}, sd-1.x, sd-2.x), '
                        'JSON flags or config')
    args = parser.parse_args()
    if args.arch in ('sd-1.x', 'sd-2.x'):
        return print_sd_blocks(args.arch)
    flags = adm_flags_from(arch_from_argument(args.arch, argument='arch'))
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
