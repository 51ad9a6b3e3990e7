"""ImageNet-1k class indices of WordNet ids (wnids), as class-conditional ADM models use them.

OpenAI's class-conditional ADM checkpoints were trained with guided-diffusion's
``image_datasets.py``, which numbers classes by the sorted list of class names (the ILSVRC2012
synset folders): index i is the i-th wnid of the sorted 1000 ILSVRC2012 synsets
(``n01440764`` -> 0, ``n01443537`` -> 1, ..., ``n15075141`` -> 999). The list ships as
``imagenet_wnids.txt`` next to this module (the public ILSVRC2012 synset list, sorted).
"""
from functools import lru_cache
from pathlib import Path

WNIDS_FILE = Path(__file__).with_name('imagenet_wnids.txt')


@lru_cache(maxsize=1)
def imagenet_wnids():
    """tuple[str]: the 1000 ILSVRC2012 wnids in class-index order (sorted)."""
    wnids = tuple(WNIDS_FILE.read_text().split())
    if len(wnids) != 1000 or list(wnids) != sorted(set(wnids)):
        raise RuntimeError(f'{WNIDS_FILE} must hold 1000 distinct sorted wnids, '
                           f'has {len(wnids)}')
    return wnids


def imagenet_indices(wnids):
    """ImageNet-1k class index of each wnid: ``list[int]``, one per entry of ``wnids``.

    Raises:
        ValueError: naming every wnid that is not one of the 1000 ILSVRC2012 classes.
    """
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    unknown = [w for w in wnids if w not in index]
    if unknown:
        raise ValueError(f'{len(unknown)} wnids are not ILSVRC2012 classes: {unknown[:10]} '
                         f'(the classes are listed in {WNIDS_FILE})')
    return [index[w] for w in wnids]


def dataset_to_imagenet_indices(wnids):
    """ImageNet-1k index of each dataset label, for a dataset whose classes are wnids.

    Args:
        wnids (str | Sequence[str]): the dataset's class wnids, a text file (one per line,
            e.g. Tiny-ImageNet's ``wnids.txt``) or a list, in any order. Dataset label i is
            the i-th wnid in sorted order, as mmpretrain's ``CustomDataset`` numbers class
            folders.

    Returns:
        list[int]: entry i is the ImageNet-1k index of dataset label i.
    """
    if isinstance(wnids, (str, Path)):
        path = Path(wnids).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f'wnid list {path} does not exist (one wnid per line, '
                                    "e.g. Tiny-ImageNet's wnids.txt)")
        wnids = path.read_text().split()
    wnids = list(wnids)
    repeated = sorted({w for w in wnids if wnids.count(w) > 1})
    if repeated:
        raise ValueError(f'the dataset wnids repeat: {repeated}')
    return imagenet_indices(sorted(wnids))
