"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, for mmpretrain's reader."""
import gzip
import os
import os.path as osp
import shutil

DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist'
FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
         't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')


def prepare_fashion_mnist(data_root, source=DEBIAN_FASHION_MNIST):
    """Gunzip the idx files from ``source`` into ``data_root`` (what ``FashionMNIST`` reads).

    Files already in ``data_root`` are kept. Returns ``data_root``.

    Raises:
        FileNotFoundError: a file is neither in ``data_root`` nor in ``source``; the message
            says how to install the Debian package.
    """
    os.makedirs(data_root, exist_ok=True)
    for name in FILES:
        target = osp.join(data_root, name)
        if osp.isfile(target):
            continue
        packed = osp.join(source, name + '.gz')
        if not osp.isfile(packed):
            raise FileNotFoundError(
                f'{packed} not found: install Fashion-MNIST with '
                f"'apt-get install dataset-fashion-mnist' (or put {name} in {data_root})")
        with gzip.open(packed, 'rb') as src, open(target + '.part', 'wb') as dst:
            shutil.copyfileobj(src, dst)
        os.replace(target + '.part', target)
    return data_root
