"""PCA of feature maps as RGB, for a few images, across blocks and timesteps, as one PNG.

    python tools/analysis/visualize_features.py IMAGE_DIR OUT.png --arch adm-256-uncond \
        --checkpoint 256x256_diffusion_uncond.pt --blocks 6 12 19 24 30 \
        --timesteps 50 150 300 [--num-images 4] [--size 256]

Each row: the image, then one map per (block, timestep), blocks outermost.
"""
import argparse
import os.path as osp
import sys

import torch
from PIL import Image

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/: cli_common
from cli_common import arch_from_argument  # noqa: E402

from mmdiffssl.analysis import feature_pca_grid  # noqa: E402
from mmdiffssl.apis import build_backbone, to_model_range  # noqa: E402
from mmdiffssl.apis.extraction import list_images, load_image  # noqa: E402

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image_dir')
    parser.add_argument('out', help='PNG path')
    parser.add_argument('--arch', default='adm-256-uncond',
                        help='preset name, JSON dict of guided-diffusion flags, or config file')
    parser.add_argument('--checkpoint')
    parser.add_argument('--blocks', type=int, nargs='+', required=True)
    parser.add_argument('--timesteps', type=int, nargs='+', required=True)
    parser.add_argument('--num-images', type=int, default=4)
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--class-label', type=int)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    backbone = build_backbone(arch_from_argument(args.arch), checkpoint=args.checkpoint,
                              blocks=args.blocks, timesteps=args.timesteps,
                              class_label=args.class_label).to(args.device)
    paths = list_images(args.image_dir)[:args.num_images]
    images = torch.stack([load_image(p, args.size) for p in paths]).to(args.device)
    grid = feature_pca_grid(backbone, to_model_range(images), args.blocks, args.timesteps)
    Image.fromarray(grid).save(args.out)
    print(f'wrote {args.out}: {len(paths)} images x {len(args.blocks)} blocks x '
          f'{len(args.timesteps)} timesteps')


if __name__ == '__main__':
    main()
