"""Fashion-MNIST items composed onto larger canvases: a real-content dense-prediction set.

Each canvas is a black ``H x W`` grayscale image holding a few Fashion-MNIST items (28 x 28,
scaled by a random factor), pasted one after the other. An item's pixels are those above
``mask_threshold`` in the scaled item; pasting copies exactly those pixels, so a later item
covers an earlier one where they overlap (``overlap='occlude'``) and every instance mask is
the item's *visible* pixels. With ``overlap='avoid'`` items are placed so that their boxes do
not intersect.

:func:`write_canvas_dataset` writes both annotation formats from the same canvases::

    OUT/images/{training,validation}/000000.png         the canvases (grayscale)
    OUT/annotations/{training,validation}/000000.png    label maps, uint8: 0 = background,
                                                        k + 1 = Fashion-MNIST class k
    OUT/annotations/instances_{training,validation}.json   COCO instances (RLE masks)
    OUT/canvas_meta.json                                the settings that made the set

The label maps follow mmseg's ADE20K convention: with ``reduce_zero_label=True`` the
background (0) becomes the ignore index 255 and value ``k + 1`` becomes class ``k``, the
index of :data:`FASHION_MNIST_CLASSES`. The COCO ``category_id`` is the same ``k + 1`` and
the categories are listed in class order, so mmdet's ``CocoDataset`` (labels numbered by the
order of ``metainfo['classes']``) also maps it to class ``k``. Training canvases take their
items from Fashion-MNIST's training split, validation canvases from its test split.

Every canvas is drawn from its own generator, seeded by ``(seed, split, index)``: a set is
a pure function of its settings, and canvas ``i`` does not depend on how many are written.
"""
import gzip
import json
import numbers
import os
import os.path as osp
import re
from dataclasses import asdict, dataclass

import numpy as np

from .fashion_mnist import DEBIAN_FASHION_MNIST

#: Fashion-MNIST's class names in label order (as mmpretrain's ``FashionMNIST``).
FASHION_MNIST_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
                         'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
#: canvas split (ADE20K folder name) -> Fashion-MNIST file prefix the items come from
CANVAS_SPLITS = {'training': 'train', 'validation': 't10k'}
OVERLAP_MODES = ('occlude', 'avoid')
IMAGE_FORMATS = ('png', 'jpg')
ITEM_SIZE = 28
#: names of the files the tool writes into the split folders (replaced on every run)
_CANVAS_FILE = re.compile(r'^\d{6}\.(png|jpg)$')
_IDX_DTYPE = 0x08   # unsigned byte, the only type Fashion-MNIST uses


def read_idx(path):
    """Read an idx file (``.gz`` or raw) of unsigned bytes.

    Returns:
        np.ndarray: uint8 array of the file's shape, e.g. ``(N, 28, 28)`` for images and
        ``(N, )`` for labels.
    """
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b'\0\0' or data[2] != _IDX_DTYPE:
        raise ValueError(f'{path} is not an idx file of unsigned bytes '
                         f'(header {data[:4].hex() or "empty"}, expected 000008xx)')
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise ValueError(f'{path}: header says {shape} ({int(np.prod(shape))} bytes) but '
                         f'{len(data) - offset} bytes follow it')
    return np.frombuffer(data, np.uint8, offset=offset).reshape(shape)


def _idx_path(source, name):
    for candidate in (osp.join(source, name), osp.join(source, name + '.gz')):
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f'{name}[.gz] not found in {source!r}: give the folder of Debian\'s '
        f'dataset-fashion-mnist ({DEBIAN_FASHION_MNIST}, '
        "'apt-get install dataset-fashion-mnist') or one prepared by "
        'tools/dataset_converters/fashion_mnist.py')


def load_fashion_mnist(source, prefix):
    """Fashion-MNIST images and labels of one split.

    Args:
        source (str): folder with ``{prefix}-images-idx3-ubyte`` and
            ``{prefix}-labels-idx1-ubyte``, raw or ``.gz``.
        prefix (str): ``'train'`` or ``'t10k'``.

    Returns:
        tuple: images ``(N, 28, 28)`` uint8 and labels ``(N, )`` int64 in 0..9.
    """
    if not osp.isdir(source):
        raise FileNotFoundError(
            f'Fashion-MNIST folder {source!r} does not exist: install Debian\'s '
            f"'dataset-fashion-mnist' (files in {DEBIAN_FASHION_MNIST}) or pass the folder "
            'tools/dataset_converters/fashion_mnist.py prepared')
    images = read_idx(_idx_path(source, f'{prefix}-images-idx3-ubyte'))
    labels = read_idx(_idx_path(source, f'{prefix}-labels-idx1-ubyte')).astype(np.int64)
    if images.ndim != 3 or images.shape[1:] != (ITEM_SIZE, ITEM_SIZE):
        raise ValueError(f'{source}: {prefix} images have shape {images.shape}, '
                         f'expected (N, {ITEM_SIZE}, {ITEM_SIZE})')
    if labels.shape != images.shape[:1]:
        raise ValueError(f'{source}: {len(labels)} {prefix} labels for {len(images)} images')
    return images, labels


def _pair(value, name, pair='(min, max)', kind=int):
    """``value`` or ``(value, )`` -> ``(value, value)``; a 2-sequence -> a tuple of ``kind``."""
    if isinstance(value, numbers.Real):
        return kind(value), kind(value)
    if isinstance(value, str) or len(value) not in (1, 2):
        raise ValueError(f'{name}={value!r}: give one number or a {pair} pair')
    return kind(value[0]), kind(value[-1])


@dataclass(frozen=True)
class CanvasSpec:
    """How canvases are composed (validated on construction).

    Args:
        canvas_size (int | tuple[int, int]): canvas side, or ``(height, width)``.
        items_per_canvas (int | tuple[int, int]): items on each canvas, or a ``(min, max)``
            range (inclusive) drawn uniformly per canvas. The density limit: ``max`` square
            patches of the smallest item size, times ``min_visible`` with ``'occlude'``,
            must not cover more than the canvas area (placement can still fail on a full
            canvas: an error then says so).
        scale_range (float | tuple[float, float]): items are resized from 28 x 28 to
            ``round(28 * s)`` pixels square, ``s`` uniform in this range per item.
        overlap (str): ``'occlude'``: positions are uniform, later items cover earlier
            ones; ``'avoid'``: the boxes of an item's pixels never intersect.
        min_visible (float): with ``'occlude'``, a placement is redrawn when it would leave
            an earlier item with less than this fraction of its pixels visible; in (0, 1].
        mask_threshold (int): an item's pixels are those above this value (0..254).
        max_tries (int): placements tried per item before giving up with an error.
    """
    canvas_size: tuple = (128, 128)
    items_per_canvas: tuple = (2, 4)
    scale_range: tuple = (1.0, 1.5)
    overlap: str = 'occlude'
    min_visible: float = 0.5
    mask_threshold: int = 0
    max_tries: int = 100

    def __post_init__(self):
        height, width = _pair(self.canvas_size, 'canvas_size', '(height, width)')
        lo_items, hi_items = _pair(self.items_per_canvas, 'items_per_canvas')
        lo_scale, hi_scale = _pair(self.scale_range, 'scale_range', kind=float)
        set_ = object.__setattr__   # frozen dataclass: normalise the fields once
        set_(self, 'canvas_size', (height, width))
        set_(self, 'items_per_canvas', (lo_items, hi_items))
        set_(self, 'scale_range', (lo_scale, hi_scale))
        if height < 1 or width < 1:
            raise ValueError(f'canvas_size={self.canvas_size}: sides must be >= 1')
        if not 1 <= lo_items <= hi_items:
            raise ValueError(f'items_per_canvas={self.items_per_canvas}: need '
                             '1 <= min <= max')
        if not 0 < lo_scale <= hi_scale:
            raise ValueError(f'scale_range={self.scale_range}: need 0 < min <= max')
        if self.overlap not in OVERLAP_MODES:
            raise ValueError(f'overlap={self.overlap!r} is not one of {OVERLAP_MODES}')
        if not 0 < self.min_visible <= 1:
            raise ValueError(f'min_visible={self.min_visible}: must be in (0, 1]')
        if not 0 <= self.mask_threshold <= 254:
            raise ValueError(f'mask_threshold={self.mask_threshold}: must be in 0..254')
        if self.max_tries < 1:
            raise ValueError(f'max_tries={self.max_tries}: must be >= 1')
        small, large = self.item_sizes
        if small < 1:
            raise ValueError(f'scale_range={self.scale_range}: items of {small} px '
                             f'(28 x {lo_scale}); the smallest scale must give >= 1 px')
        if large > min(height, width):
            raise ValueError(
                f'scale_range={self.scale_range}: items up to {large} x {large} px '
                f'(28 x {hi_scale}) do not fit on a {height} x {width} canvas; use a larger '
                f'canvas_size or a max scale <= {min(height, width) / ITEM_SIZE:.3g}')
        # The density limit: the items' patches (their visible share) must fit in the area.
        share = 1.0 if self.overlap == 'avoid' else self.min_visible
        needed = hi_items * share * small * small
        if needed > height * width:
            raise ValueError(
                f'items_per_canvas={self.items_per_canvas}: {hi_items} patches of at least '
                f'{small} x {small} px, {share:.0%} of each visible (overlap={self.overlap!r}), '
                f'cover {needed:.0f} px, more than the {height * width} px of a {height} x '
                f'{width} canvas: use at most {int(height * width // (share * small * small))} '
                'items, a larger canvas or a smaller scale')

    @property
    def item_sizes(self):
        """(smallest, largest) item side in pixels."""
        return tuple(int(round(ITEM_SIZE * s)) for s in self.scale_range)


def _place_occluding(owner, full_areas, mask, y, x, min_visible):
    """The owner map after pasting ``mask`` as the next item at (y, x), or None when an
    earlier item would keep less than ``min_visible`` of its pixels."""
    size = mask.shape[0]
    trial = owner.copy()
    trial[y:y + size, x:x + size][mask] = len(full_areas)
    if full_areas:
        visible = np.bincount(trial.ravel() + 1, minlength=len(full_areas) + 2)[1:-1]
        if np.any(visible < min_visible * np.asarray(full_areas)):
            return None
    return trial


def _mask_box(mask, y, x):
    """Box (x0, y0, x1, y1), exclusive ends, of a patch mask placed at (y, x)."""
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    return x + cols[0], y + rows[0], x + cols[-1] + 1, y + rows[-1] + 1


def _boxes_intersect(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def compose_canvas(items, labels, spec, rng, where='canvas'):
    """Draw one canvas.

    Args:
        items (np.ndarray): source items ``(N, 28, 28)`` uint8.
        labels (np.ndarray): their classes ``(N, )`` in 0..9.
        spec (CanvasSpec): composition settings.
        rng (np.random.Generator): the canvas's generator.
        where (str): names the canvas in errors.

    Returns:
        tuple: ``image`` ``(H, W)`` uint8 and ``instances``, a list in paint order of dicts
        with ``label`` (int), ``mask`` ``(H, W)`` bool of the visible pixels (non-empty,
        pairwise disjoint) and ``item`` = ``dict(index, x, y, size)``: the source item and
        the top-left corner and side of its scaled ``size x size`` patch.

    Raises:
        RuntimeError: an item found no allowed position in ``spec.max_tries`` tries.
    """
    import cv2
    height, width = spec.canvas_size
    count = int(rng.integers(spec.items_per_canvas[0], spec.items_per_canvas[1] + 1))
    image = np.zeros((height, width), np.uint8)
    owner = np.full((height, width), -1, np.int64)   # index of the item seen at each pixel
    full_areas, boxes, placed = [], [], []
    for k in range(count):
        index = int(rng.integers(len(items)))
        size = int(round(ITEM_SIZE * rng.uniform(*spec.scale_range)))
        patch = cv2.resize(items[index], (size, size), interpolation=cv2.INTER_LINEAR)
        mask = patch > spec.mask_threshold
        if not mask.any():
            raise RuntimeError(f'{where}: Fashion-MNIST item {index} has no pixel above '
                               f'mask_threshold={spec.mask_threshold} at {size} px')
        for _ in range(spec.max_tries):
            y = int(rng.integers(height - size + 1))
            x = int(rng.integers(width - size + 1))
            if spec.overlap == 'avoid':
                box = _mask_box(mask, y, x)
                if any(_boxes_intersect(box, other) for other in boxes):
                    continue
                boxes.append(box)
                owner[y:y + size, x:x + size][mask] = k
                break
            trial = _place_occluding(owner, full_areas, mask, y, x, spec.min_visible)
            if trial is not None:
                owner = trial
                break
        else:
            raise RuntimeError(
                f'{where}: found no place for item {k + 1} of {count} ({size} x {size} px) '
                f'in {spec.max_tries} tries on a {height} x {width} canvas with '
                f'overlap={spec.overlap!r}, min_visible={spec.min_visible}: use fewer '
                'items_per_canvas, a smaller scale_range or a larger canvas_size')
        image[y:y + size, x:x + size][mask] = patch[mask]
        full_areas.append(int(mask.sum()))
        placed.append(dict(label=int(labels[index]),
                           item=dict(index=index, x=x, y=y, size=size)))
    for k, instance in enumerate(placed):
        instance['mask'] = owner == k
    return image, placed


def canvas_rng(seed, split, index):
    """The generator of canvas ``index`` of ``split`` (independent of the set's size)."""
    return np.random.default_rng([int(seed), list(CANVAS_SPLITS).index(split), int(index)])


def coco_instance(mask, label, ann_id, image_id, item):
    """A COCO annotation of a visible mask ``(H, W)`` bool: compressed RLE, its area and box.

    ``category_id`` is ``label + 1``; ``fashion_mnist`` records the source item.
    """
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(id=ann_id, image_id=image_id, category_id=label + 1, iscrowd=0,
                segmentation=dict(size=[int(s) for s in rle['size']],
                                  counts=rle['counts'].decode('ascii')),
                area=float(mask_utils.area(rle)),
                bbox=[float(v) for v in mask_utils.toBbox(rle)],
                fashion_mnist=item)


def label_map(instances, shape):
    """Label PNG content ``(H, W)`` uint8: ``label + 1`` under each visible mask, else 0."""
    out = np.zeros(shape, np.uint8)
    for instance in instances:
        out[instance['mask']] = instance['label'] + 1
    return out


def write_canvas_dataset(out_dir, num_images, source=DEBIAN_FASHION_MNIST, seed=0,
                         spec=None, image_format='png'):
    """Write canvases with COCO and ADE20K-style annotations under ``out_dir``.

    Args:
        out_dir (str): output folder (created). In the folders of the splits written, the
            canvases and label PNGs of an earlier run (``NNNNNN.png|jpg``) are deleted first,
            so mmseg's folder scan finds only this run's; other files are left alone.
        num_images (dict[str, int]): canvases per split, keys in ``CANVAS_SPLITS``
            (``'training'``, ``'validation'``); a split with 0 is written empty.
        source (str): Fashion-MNIST folder (raw or ``.gz`` idx files).
        seed (int): seed of every canvas generator.
        spec (CanvasSpec, optional): composition settings (default ``CanvasSpec()``).
        image_format (str): ``'png'`` (lossless: image pixels equal the pasted item
            pixels) or ``'jpg'`` (quality 95; ADE20KDataset's default suffix).

    Returns:
        dict: split -> ``dict(images=folder, labels=folder, coco=json path, count=int)``.
    """
    import cv2
    spec = spec or CanvasSpec()
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f'image_format={image_format!r} is not one of {IMAGE_FORMATS}')
    unknown = set(num_images) - set(CANVAS_SPLITS)
    if unknown:
        raise ValueError(f'splits {sorted(unknown)} are not among {tuple(CANVAS_SPLITS)}')
    for split, count in num_images.items():
        if int(count) != count or count < 0:
            raise ValueError(f'num_images[{split!r}]={count!r}: must be an integer >= 0')
    categories = [dict(id=k + 1, name=name, supercategory='fashion')
                  for k, name in enumerate(FASHION_MNIST_CLASSES)]
    height, width = spec.canvas_size
    written = {}
    for split, count in num_images.items():
        items, labels = load_fashion_mnist(source, CANVAS_SPLITS[split])
        image_dir = osp.join(out_dir, 'images', split)
        label_dir = osp.join(out_dir, 'annotations', split)
        for folder in (image_dir, label_dir):
            os.makedirs(folder, exist_ok=True)
            # canvases of an earlier, larger run would stay in the folders mmseg scans
            for name in os.listdir(folder):
                if _CANVAS_FILE.match(name):
                    os.remove(osp.join(folder, name))
        images, annotations = [], []
        for i in range(int(count)):
            image, instances = compose_canvas(items, labels, spec, canvas_rng(seed, split, i),
                                              where=f'{split} canvas {i}')
            name = f'{i:06d}'
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == 'jpg' else []
            cv2.imwrite(osp.join(image_dir, f'{name}.{image_format}'), image, params)
            cv2.imwrite(osp.join(label_dir, f'{name}.png'), label_map(instances, image.shape))
            images.append(dict(id=i + 1, file_name=f'{name}.{image_format}', height=height,
                               width=width))
            for instance in instances:
                annotations.append(coco_instance(instance['mask'], instance['label'],
                                                 len(annotations) + 1, i + 1, instance['item']))
        coco_path = osp.join(out_dir, 'annotations', f'instances_{split}.json')
        with open(coco_path, 'w') as f:
            json.dump(dict(info=dict(description=f'Fashion-MNIST canvases, {split}'),
                           images=images, annotations=annotations, categories=categories), f)
        written[split] = dict(images=image_dir, labels=label_dir, coco=coco_path,
                              count=int(count))
    meta = dict(seed=int(seed), num_images={k: int(v) for k, v in num_images.items()},
                image_format=image_format, source=osp.abspath(source),
                classes=list(FASHION_MNIST_CLASSES), spec=asdict(spec))
    with open(osp.join(out_dir, 'canvas_meta.json'), 'w') as f:
        json.dump(meta, f, indent=1)
    return written
