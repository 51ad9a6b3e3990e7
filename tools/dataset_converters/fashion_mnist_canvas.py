"""Compose Fashion-MNIST items onto canvases: COCO json + ADE20K-style label PNGs.

    python tools/dataset_converters/fashion_mnist_canvas.py data/fashion_mnist_canvas \
        [--source DIR] [--train-images 5000] [--val-images 500] [--canvas-size 128] \
        [--items 2 4] [--scale 1.0 1.5] [--overlap occlude|avoid] [--min-visible 0.5] \
        [--threshold 0] [--image-format png|jpg] [--seed 0]

Writes OUT/images/{training,validation}/*.png, OUT/annotations/{training,validation}/*.png
(0 = background, k + 1 = class k), OUT/annotations/instances_{training,validation}.json and
OUT/canvas_meta.json (see mmdiffssl/datasets/canvas.py).
"""
import argparse
import sys

from mmdiffssl.datasets.canvas import CanvasSpec, write_canvas_dataset
from mmdiffssl.datasets.fashion_mnist import DEBIAN_FASHION_MNIST


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out_dir')
    parser.add_argument('--source', default=DEBIAN_FASHION_MNIST,
                        help='folder with the Fashion-MNIST idx files (raw or .gz)')
    parser.add_argument('--train-images', type=int, default=5000)
    parser.add_argument('--val-images', type=int, default=500)
    parser.add_argument('--canvas-size', type=int, nargs='+', default=[128],
                        metavar='SIDE', help='side, or height and width')
    parser.add_argument('--items', type=int, nargs='+', default=[2, 4], metavar='N',
                        help='items per canvas: a number or a min and max')
    parser.add_argument('--scale', type=float, nargs='+', default=[1.0, 1.5], metavar='S',
                        help='item scale (of 28 px): a number or a min and max')
    parser.add_argument('--overlap', choices=['occlude', 'avoid'], default='occlude')
    parser.add_argument('--min-visible', type=float, default=0.5,
                        help="with --overlap occlude: least visible share of every item")
    parser.add_argument('--threshold', type=int, default=0,
                        help='item pixels are those above this value')
    parser.add_argument('--image-format', choices=['png', 'jpg'], default='png')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    try:
        spec = CanvasSpec(canvas_size=tuple(args.canvas_size), items_per_canvas=tuple(args.items),
                          scale_range=tuple(args.scale), overlap=args.overlap,
                          min_visible=args.min_visible, mask_threshold=args.threshold)
    except ValueError as err:
        parser.error(str(err))
    try:
        written = write_canvas_dataset(
            args.out_dir, dict(training=args.train_images, validation=args.val_images),
            source=args.source, seed=args.seed, spec=spec, image_format=args.image_format)
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        sys.exit(f'error: {err}')
    for split, paths in written.items():
        print(f'{split}: {paths["count"]} canvases in {paths["images"]}, label PNGs in '
              f'{paths["labels"]}, COCO json {paths["coco"]}')


if __name__ == '__main__':
    main()
