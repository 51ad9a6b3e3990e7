"""A disk cache of frozen-backbone features, so classification heads train from disk.

The cache holds exactly what the head consumes: each block's feature (timesteps fused as the
backbone fuses them), adaptive-average-pooled to at most ``pool`` x ``pool`` when the head
pools (a smaller map is kept as it is, as the heads read it online),
flattened and concatenated into one fp16 row per image, in a memory-mapped ``.npy`` file.

A cache lives in ``<root>/<key hash>/``: ``features.npy`` ``(N, D)`` fp16 and ``meta.json``
(the key fields, the row layout, the file size and its blake2b checksum). The key covers the
backbone's ``cache_key()`` (for every family: the weights' file fingerprint, the arch,
blocks, timesteps, fusion, noise mode, seed and ensemble size, the schedule, dtype and what
else the family's features depend on), the pooling, the data preprocessor,
the dataset (type, root, annotation file, split, subset) with its pipeline, and the ids of the
images in order with what identifies each image beyond its path (``image_key``: the file's
size and ``mtime_ns`` by default, or a hash of its bytes; in-memory images are hashed). A
changed field gives another folder (a new fill); a truncated file or a flipped byte fails the
size or checksum check and the cache is refilled, with a log line saying why. Nothing is
reused silently.

Filling is sharded across ranks: rank r computes rows r, r + world, ... into the shared
memory-mapped file; rank 0 then checksums it.

Reading is batched: torch's DataLoader hands a whole batch of indices to
:meth:`CachedFeatureDataset.__getitems__`, which reads those rows with one indexing of the
memory map into one tensor, takes the labels from an array gathered while the cache key was
computed (no per-item ``get_data_info``), and builds each ``DataSample`` in one constructor
call. With ``default_collate`` (which :func:`mmdiffssl.engine.with_feature_cache` sets) the
batch reaches the model as one ``(B, D, 1, 1)`` tensor.
"""
import hashlib
import logging
import json
import os
import os.path as osp

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dist import barrier, broadcast_object_list, get_dist_info, is_main_process
from mmengine.logging import print_log
from mmengine.registry import DATASETS, MODELS
from torch.utils.data import Dataset
from tqdm import tqdm

from mmdiffssl.models.backbones.base import (DiffusionBackbone, file_checksum, jsonable,
                                             key_hash, shapes_only)
from mmdiffssl.models.heads.layers import as_size

CACHE_NOISE_MODES = ('fixed', 'none', 'ensemble')


#: How :class:`CachedFeatureDataset` tells an image file from another at the same path.
IMAGE_KEYS = ('stat', 'content', 'path')
_IMAGE_FILE_KEYS = ('img_path', 'filename')


def sample_id(dataset, index, info=None):
    """A stable id of sample ``index``: its image path when it has one, else its index.

    ``info`` is ``dataset.get_data_info(index)`` when the caller already has it.
    """
    info = dataset.get_data_info(index) if info is None else info
    for key in ('img_path', 'img_id', 'filename'):
        if key in info:
            return str(info[key])
    return f'index:{index}'


def image_identity(info, image_key='stat', index=None):
    """What identifies a sample's image beyond its path, for the cache key.

    ``'stat'``: the image file's size and ``st_mtime_ns`` (an image regenerated at the same
    path changes them); ``'content'``: a blake2b hash of the file's bytes (reads every image
    once per key computation); ``'path'``: nothing (the path alone: images regenerated at the
    same path reuse the old features). An image held in memory (``info['img']``, e.g.
    mmpretrain's MNIST readers) is hashed in every mode but ``'path'``.

    Returns:
        str: '' when there is nothing beyond the path to identify.

    Raises:
        ValueError: unknown ``image_key``; FileNotFoundError: the image file cannot be
            stat'ed (the message names it and the sample).
    """
    if image_key not in IMAGE_KEYS:
        raise ValueError(f"feature_cache image_key={image_key!r} is not one of {IMAGE_KEYS}")
    if image_key == 'path':
        return ''
    path = next((info[k] for k in _IMAGE_FILE_KEYS if isinstance(info.get(k), str)), None)
    if path is not None:
        try:
            if image_key == 'content':
                return 'blake2b:' + file_checksum(path)
            stat = os.stat(path)
        except OSError as err:
            raise FileNotFoundError(
                f"feature cache: cannot read image '{path}' of sample {index} to identify it "
                f"(image_key={image_key!r}): {err}. For images not on a local file system, "
                "image_key='path' keys them by path alone") from err
        return f'size:{stat.st_size}:mtime_ns:{stat.st_mtime_ns}'
    img = info.get('img')
    if isinstance(img, (np.ndarray, torch.Tensor)):
        array = np.ascontiguousarray(img.numpy() if torch.is_tensor(img) else img)
        digest = hashlib.blake2b(array.tobytes(), digest_size=16)
        digest.update(f'{array.dtype}{array.shape}'.encode())
        return 'array:' + digest.hexdigest()
    return ''


def _scan(dataset, image_key='stat'):
    """One pass over the data infos: every sample's id and its class label.

    Returns ``(ids, labels)``: ``ids`` are the sample ids (:func:`sample_id`) with the image
    identities (:func:`image_identity`) appended; ``labels`` is an int64 array, or None when
    some sample has no ``gt_label`` (then items carry no label, as the online pipeline would
    pack none).
    """
    ids, labels = [], []
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        identity = image_identity(info, image_key, index)
        ids.append(sample_id(dataset, index, info) + (f'\t{identity}' if identity else ''))
        label = info.get('gt_label')
        if label is None:
            labels = None
        elif np.size(label) != 1:
            raise ValueError(f'sample {index} has gt_label {label!r}: the feature cache '
                             'serves single-label classification data')
        elif labels is not None:
            labels.append(int(np.asarray(label).reshape(())))
    return ids, None if labels is None else np.asarray(labels, dtype=np.int64)


def layout_of(backbone, pool=None, input_size=None):
    """``[(output, channels, h, w)]`` of a cached row for a built backbone, one per output.

    ``h, w`` are the output's map size, ``input_size / stride`` (at the backbone's native
    resolution where ``input_size`` is not given), capped at ``pool`` when pooling: a map
    smaller than ``pool`` is kept as it is, never upsampled. That is what the heads read
    online: the attention heads pool each map to ``min(size, pool_size)``, and the pooled
    heads' own adaptive pooling turns a kept map into the same ``pool x pool`` values as the
    online map. Where neither size is known the pooled size is ``pool`` (the fill checks it
    against the maps it sees). ``output`` names the output (``backbone.output_names()``: a
    block number, a tap name, ``'stride4'``).
    """
    if pool is None and input_size is None:
        raise ValueError('a feature cache without pooling needs input_size=(H, W)')
    side = input_size if input_size is not None else backbone.native_resolution
    layout = []
    for block, spec in zip(backbone.output_names(), backbone.output_shape()):
        if side is None:
            h, w = as_size(pool)
        else:
            h, w = (length // spec.stride for length in as_size(side))
            h, w = _capped(h, w, pool)
        layout.append((block, spec.channels, h, w))
    return layout


def _capped(h, w, pool):
    if not pool:
        return h, w
    ph, pw = as_size(pool)
    return min(h, ph), min(w, pw)


def map_layout(feats, pool=None):
    """``[(channels, h, w)]`` the cache stores for the maps ``feats`` (each ``(B, C, H, W)``):
    the map size, capped at ``pool`` (:func:`layout_of`)."""
    return [(int(feat.shape[1]), *_capped(int(feat.shape[2]), int(feat.shape[3]), pool))
            for feat in feats]


def cache_layout(backbone_cfg, pool=None, input_size=None):
    """:func:`layout_of` from the backbone config alone (built by
    :func:`~mmdiffssl.models.backbones.base.shapes_only`: meta device, no weights read)."""
    with shapes_only():
        backbone = MODELS.build(dict(backbone_cfg))
    return layout_of(backbone, pool, input_size)


class CachedFeatureDataset(Dataset):
    """Wraps a classification dataset; items are the cached backbone features of its images.

    Args:
        dataset (dict): the image dataset config (mmpretrain), with its pipeline.
        backbone (dict): the frozen backbone config (e.g. ``ADMBackbone``).
        data_preprocessor (dict): the online model's data preprocessor config (normalisation
            and channel order the backbone was fed with).
        cache_root (str): folder holding the caches.
        pool (int, optional): adaptive average pool size of each block's map; None keeps
            the full map.
        input_size (tuple, optional): ``(H, W)`` of the backbone input; needed without pool.
        batch_size (int): images per backbone forward while filling.
        device (str, optional): where the backbone runs while filling (default: cuda if
            available).
        image_key (str): how the key tells images apart beyond their paths: ``'stat'``
            (default: each file's size and ``mtime_ns``), ``'content'`` (a hash of each
            file's bytes) or ``'path'`` (paths alone); see :func:`image_identity`.

    Each item: ``dict(inputs=Tensor(D, 1, 1) fp16, data_samples=DataSample)``, the row of
    all blocks' (pooled) features, flattened and concatenated; :class:`CachedFeatures`
    splits it back into the backbone's tuple. The sample carries ``gt_label`` and
    ``sample_idx``. A DataLoader reads whole batches through :meth:`__getitems__`.
    """

    def __init__(self, dataset, backbone, data_preprocessor, cache_root, pool=None,
                 input_size=None, batch_size=32, device=None, image_key='stat'):
        super().__init__()
        if image_key not in IMAGE_KEYS:
            raise ValueError(f"feature_cache image_key={image_key!r} is not one of "
                             f'{IMAGE_KEYS}')
        self.image_key = image_key
        self.dataset = DATASETS.build(dataset)
        self.backbone_cfg = backbone
        self.preprocessor_cfg = data_preprocessor
        self.pool = pool
        self.batch_size = batch_size
        self.device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        self.metainfo = self.dataset.metainfo
        backbone_module = MODELS.build(backbone)
        if not isinstance(backbone_module, DiffusionBackbone):
            raise TypeError(f'the feature cache needs a diffusion backbone, got '
                            f'{type(backbone_module).__name__}')
        if not backbone_module.frozen:
            raise ValueError('the feature cache needs a frozen backbone (frozen=True)')
        if backbone_module.noise.mode not in CACHE_NOISE_MODES:
            raise ValueError(f"noise='{backbone_module.noise.mode}' cannot be cached (each pass "
                             f'draws new noise); use one of {CACHE_NOISE_MODES}')
        self.layout = layout_of(backbone_module, pool, input_size)
        ids, self.labels = _scan(self.dataset, image_key)
        self.key = self._key(backbone_module, dataset, ids)
        self.cache_dir = osp.join(cache_root, key_hash(self.key))
        self.features = self._open_or_fill(backbone_module)

    # ------------------------------------------------------------------ key and layout
    def _key(self, backbone, dataset_cfg, ids):
        return dict(
            backbone=backbone.cache_key(),
            pool=self.pool,
            layout=[list(item) for item in self.layout],
            data_preprocessor=jsonable(self.preprocessor_cfg),
            dataset=jsonable(dataset_cfg),
            image_ids=hashlib.blake2b('\n'.join(ids).encode(), digest_size=20).hexdigest(),
            num_images=len(ids))

    @property
    def row_size(self):
        return sum(c * h * w for _, c, h, w in self.layout)

    # ------------------------------------------------------------------ validation and fill
    def _valid(self):
        """Why the cache on disk cannot be used (None when it can)."""
        meta_path = osp.join(self.cache_dir, 'meta.json')
        data_path = osp.join(self.cache_dir, 'features.npy')
        if not osp.isfile(meta_path) or not osp.isfile(data_path):
            return 'no complete cache'
        try:
            with open(meta_path, 'rb') as f:
                meta = json.loads(f.read().decode('utf-8'))
        except (ValueError, UnicodeDecodeError) as err:   # JSONDecodeError is a ValueError
            return f'meta.json is not valid JSON ({type(err).__name__}: {err}; corrupted?)'
        fields = ('key', 'file_size', 'checksum')
        if not isinstance(meta, dict) or any(name not in meta for name in fields):
            return f'meta.json lacks the fields {list(fields)} (corrupted?)'
        if meta['key'] != self.key:
            return 'key fields differ from meta.json'
        if osp.getsize(data_path) != meta['file_size']:
            return (f'features.npy has {osp.getsize(data_path)} bytes, '
                    f"meta.json says {meta['file_size']} (truncated?)")
        if file_checksum(data_path) != meta['checksum']:
            return 'features.npy checksum differs from meta.json (corrupted)'
        return None

    def _decide(self):
        """Rank 0 validates the cache and every rank follows its verdict."""
        verdict = [self._valid() if is_main_process() else None]
        broadcast_object_list(verdict)
        return verdict[0]

    def _open_or_fill(self, backbone):
        problem = self._decide()
        self.fill_reason = problem  # why the cache was (re)filled; None when reused
        if problem is not None:
            level = logging.INFO if problem == 'no complete cache' else logging.WARNING
            print_log(f'feature cache {self.cache_dir}: {problem}; filling it', 'current', level)
            self._fill(backbone)
            problem = self._decide()
            if problem is not None:
                raise RuntimeError(f'feature cache {self.cache_dir} is invalid right after '
                                   f'filling: {problem}')
        return np.load(osp.join(self.cache_dir, 'features.npy'), mmap_mode='r')

    def _fill(self, backbone):
        from mmengine.dataset import pseudo_collate

        rank, world = get_dist_info()
        n, d = len(self.dataset), self.row_size
        data_path = osp.join(self.cache_dir, 'features.npy')
        meta_path = osp.join(self.cache_dir, 'meta.json')
        if is_main_process():
            os.makedirs(self.cache_dir, exist_ok=True)
            if osp.exists(meta_path):
                os.remove(meta_path)
            print_log(f'feature cache: {n} images x {d} fp16 values = '
                      f'{n * d * 2 / 2**30:.3f} GiB -> {data_path}', 'current')
            np.lib.format.open_memmap(data_path, mode='w+', dtype=np.float16, shape=(n, d))
        barrier()
        out = np.load(data_path, mmap_mode='r+')
        preprocessor = MODELS.build(self.preprocessor_cfg).to(self.device)
        backbone = backbone.to(self.device).eval()
        mine = list(range(rank, n, world))
        starts = range(0, len(mine), self.batch_size)
        for start in tqdm(starts, desc=f'filling feature cache (rank {rank})', unit='batch',
                          disable=not is_main_process()):
            rows = mine[start:start + self.batch_size]
            batch = preprocessor(pseudo_collate([self.dataset[i] for i in rows]), False)
            with torch.no_grad():
                feats = backbone(batch['inputs'])
            stored = map_layout(feats, self.pool)
            if stored != [tuple(item[1:]) for item in self.layout]:
                raise ValueError(
                    f'backbone outputs {[tuple(f.shape[1:]) for f in feats]} (stored as '
                    f'{stored} with pool={self.pool!r}) do not match the cache layout '
                    f'{self.layout}: set feature_cache.input_size to the (H, W) the '
                    'pipeline feeds the backbone')
            out[rows] = self._flatten(feats).cpu().numpy()
        out.flush()
        del out
        barrier()
        if is_main_process():
            meta = dict(key=self.key, layout=self.layout, file_size=osp.getsize(data_path),
                        checksum=file_checksum(data_path))
            with open(meta_path + '.part', 'w') as f:
                json.dump(meta, f, indent=1)
            os.replace(meta_path + '.part', meta_path)
        barrier()

    def _flatten(self, feats):
        """Tuple of ``(B, C_i, H_i, W_i)`` -> ``(B, D)`` fp16, each map pooled to its layout
        size (``min(H_i, pool) x min(W_i, pool)``) if ``pool`` is set."""
        parts = []
        for feat, (_, _, h, w) in zip(feats, self.layout):
            if self.pool:
                feat = F.adaptive_avg_pool2d(feat, (h, w))
            parts.append(feat.flatten(1))
        return torch.cat(parts, 1).half()

    # ------------------------------------------------------------------ Dataset API
    def __len__(self):
        return len(self.dataset)

    def get_data_info(self, index):
        return self.dataset.get_data_info(index)

    def __getitem__(self, index):
        return self.__getitems__([index])[0]

    def read_rows(self, indices):
        """``(len(indices), D)`` fp16 tensor of the cached rows, from one memory-map read."""
        return torch.from_numpy(np.ascontiguousarray(self.features[list(indices)]))

    def __getitems__(self, indices):
        """The items of a batch of indices, from one read of the memory-mapped rows.

        Returns a list of item dicts (as ``__getitem__`` gives them) whose ``inputs`` are
        views of one ``(B, D, 1, 1)`` fp16 tensor.
        """
        from mmpretrain.structures import DataSample
        indices = [int(i) for i in indices]
        rows = self.read_rows(indices).view(len(indices), -1, 1, 1)
        labels = ([None] * len(indices) if self.labels is None else
                  torch.from_numpy(self.labels[indices]).split(1))
        items = []
        for index, row, label in zip(indices, rows, labels):
            # set_field directly: what DataSample(metainfo=...) and set_gt_label(int) store,
            # without their deepcopy of the metainfo and their label conversion.
            sample = DataSample()
            sample.set_field(index, 'sample_idx', field_type='metainfo')
            if label is not None:
                sample.set_field(label, 'gt_label', dtype=torch.Tensor)
            items.append(dict(inputs=row, data_samples=sample))
        return items


class CachedFeatures(torch.nn.Module):
    """Stands in for a frozen backbone when features come from :class:`CachedFeatureDataset`.

    Args:
        layout (list): ``[(output, channels, h, w), ...]`` of the row segments.

    Shapes: input ``(B, D, 1, 1)``; output a tuple of ``(B, channels, h, w)`` float32
    tensors, one per block, as the backbone would return them (pooled if the cache pools).
    """

    def __init__(self, layout):
        super().__init__()
        self.layout = [tuple(item) for item in layout]

    @classmethod
    def from_backbone(cls, backbone, pool=None, input_size=None):
        """Build from the frozen backbone's config (see :func:`cache_layout`)."""
        return cls(cache_layout(backbone, pool, input_size))

    def forward(self, x):
        x = x.flatten(1).float()
        sizes = [c * h * w for _, c, h, w in self.layout]
        if x.shape[1] != sum(sizes):
            raise ValueError(f'cached rows have {x.shape[1]} values, layout expects {sum(sizes)}')
        return tuple(part.view(-1, c, h, w)
                     for part, (_, c, h, w) in zip(x.split(sizes, 1), self.layout))
