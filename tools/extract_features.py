"""Extract ADMBackbone features of an image folder to .npy or .safetensors files.

    python tools/extract_features.py IMAGE_DIR OUT --arch adm-256-uncond \
        --checkpoint 256x256_diffusion_uncond.pt --blocks 24 --timesteps 150 \
        [--size 256] [--batch-size 16] [--format npy|safetensors] [--pool 2] [--dtype bf16]

Writes ``OUT/block{b}.npy`` (or one ``OUT/features.safetensors`` with keys ``block{b}``), each
``(N, C, H, W)`` float16 (or pooled to ``--pool`` x ``--pool``), and ``OUT/images.txt`` with
the image paths in row order.
"""
import argparse

import torch
from cli_common import arch_from_argument

from mmdiffssl.apis import build_backbone
from mmdiffssl.apis.extraction import extract_folder


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image_dir', help='folder of images (searched recursively)')
    parser.add_argument('out', help='output folder')
    parser.add_argument('--arch', default='adm-256-uncond', help='preset name, JSON dict of guided-diffusion flags, or config file')
    parser.add_argument('--checkpoint', help='U-Net weights (.pt/.pth/.safetensors)')
    parser.add_argument('--blocks', type=int, nargs='+', default=[24])
    parser.add_argument('--timesteps', type=int, nargs='+', default=[150])
    parser.add_argument('--noise', default='fixed', choices=['fixed', 'none', 'ensemble'])
    parser.add_argument('--class-label', type=int, help='label for class-conditional archs')
    parser.add_argument('--size', type=int, default=256, help='resize shorter side + crop')
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--pool', type=int, help='adaptive average pool to this size')
    parser.add_argument('--dtype', default='fp32', choices=['fp32', 'bf16', 'fp16'])
    parser.add_argument('--format', default='npy', choices=['npy', 'safetensors'])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    backbone = build_backbone(arch_from_argument(args.arch), checkpoint=args.checkpoint, blocks=args.blocks,
                              timesteps=args.timesteps, noise=args.noise,
                              class_label=args.class_label, dtype=args.dtype)
    written = extract_folder(backbone.to(args.device), args.image_dir, args.out,
                             size=args.size, batch_size=args.batch_size, pool=args.pool,
                             fmt=args.format)
    for path in written:
        print(path)


if __name__ == '__main__':
    main()
