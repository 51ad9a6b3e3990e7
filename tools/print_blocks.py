"""Print the block table of any diffusion backbone: block, kind, channels, stride, feature
size, module, parameters and the weights a frozen run stopping there keeps.

    python tools/print_blocks.py adm-256-uncond
    python tools/print_blocks.py configs/diffssl/linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py
    python tools/print_blocks.py '{"image_size": 32, "num_channels": 32, "channel_mult": "1,2"}'
    python tools/print_blocks.py sd-1.x              # published SD archs (needs the sd extra)
    python tools/print_blocks.py path/to/diffusers_folder [--size 512]
    python tools/print_blocks.py adm-256-uncond --taps 19   # the modules a tap can name

The argument is an ADM preset, a JSON dict of guided-diffusion flags, a config file (its
``model.backbone``), a local diffusers folder, or ``sd-1.x`` / ``sd-2.x``. Nothing is loaded:
the backbone is built on the meta device. Strides are input size / feature size.
"""
import argparse

from cli_common import backbone_config

from mmdiffssl.apis.blocks import block_table_lines, tap_lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('arch', help='ADM preset, JSON flags, config file, diffusers folder, '
                        'sd-1.x or sd-2.x')
    parser.add_argument('--size', type=int, help='input side for the feature sizes')
    parser.add_argument('--taps', metavar='BLOCK',
                        help="list the tappable modules of this block (number or name)")
    args = parser.parse_args(argv)
    cfg = backbone_config(args.arch)
    if args.taps is not None:
        block = int(args.taps) if args.taps.isdigit() else args.taps
        print('\n'.join(tap_lines(cfg, block, args.size)))
    else:
        print('\n'.join(block_table_lines(cfg, args.size)))


if __name__ == '__main__':
    main()
