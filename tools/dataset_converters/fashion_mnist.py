"""Put Fashion-MNIST where mmpretrain's FashionMNIST reads it (from Debian's package).

    python tools/dataset_converters/fashion_mnist.py data/fashion_mnist [--source DIR]
"""
import argparse

from mmdiffssl.datasets import prepare_fashion_mnist
from mmdiffssl.datasets.fashion_mnist import DEBIAN_FASHION_MNIST


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', help='folder mmpretrain reads (data_root of the config)')
    parser.add_argument('--source', default=DEBIAN_FASHION_MNIST,
                        help='folder with the *-ubyte.gz files')
    args = parser.parse_args(argv)
    print(prepare_fashion_mnist(args.data_root, args.source))


if __name__ == '__main__':
    main()
