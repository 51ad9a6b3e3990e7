"""The feature cache tells images apart by more than their paths: images regenerated at the
same paths (a converter re-run, another data_root) refill the cache instead of reusing the old
images' features."""
import os
import os.path as osp
import shutil

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DATASETS, DefaultScope
from PIL import Image

from conftest import ROOT
from mmdiffssl.engine.feature_cache_runner import with_feature_cache

FOLDER = osp.join(ROOT, 'configs/diffssl/linear_adm-tiny_1xb16-4e_folder-32px.py')
FASHION = osp.join(ROOT, 'configs/diffssl/linear_adm-tiny-cached_1xb64-2e_fashion-mnist-32px.py')

pytestmark = pytest.mark.usefixtures('one_thread')


def write_folder(root, seed, per_class=2):
    """``root/train/class_<k>/<i>.bmp``, 4 classes of random 32x32 RGB images; BMP files of
    one size whatever their content. Returns the paths in order."""
    rng = np.random.default_rng(seed)
    paths = []
    for label in range(4):
        folder = osp.join(root, 'train', f'class_{label}')
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            path = osp.join(folder, f'{i}.bmp')
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
            paths.append(path)
    return paths


def folder_cache(data_root, cache_root, **cache_options):
    cfg = Config.fromfile(FOLDER)
    cfg.feature_cache = dict(root=cache_root, pool=2, **cache_options)
    cfg.train_dataloader.dataset.data_root = data_root
    with_feature_cache(cfg)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return DATASETS.build(cfg.train_dataloader.dataset)


def test_images_regenerated_at_same_paths_refill_the_cache(tmp_path):
    data, cache = str(tmp_path / 'images'), str(tmp_path / 'cache')
    paths = write_folder(data, seed=0)
    first = folder_cache(data, cache)
    old_rows = np.array(first.features)
    assert folder_cache(data, cache).fill_reason is None   # unchanged images: reused

    # A converter re-run writes other images under the same names (same sizes: BMP).
    sizes = [osp.getsize(p) for p in paths]
    assert write_folder(data, seed=1) == paths and [osp.getsize(p) for p in paths] == sizes
    second = folder_cache(data, cache)
    assert second.fill_reason == 'no complete cache'   # a new key, a new fill
    assert second.cache_dir != first.cache_dir
    new_rows = np.array(second.features)
    assert np.abs(new_rows - old_rows).max(1).min() > 0   # every row changed
    assert len(os.listdir(cache)) == 2


def test_a_relative_data_root_under_a_shared_cache(tmp_path, monkeypatch):
    """The same relative data_root in two working folders, one absolute cache root."""
    cache = str(tmp_path / 'cache')
    rows = []
    for seed, cwd in enumerate(('run_a', 'run_b')):
        os.makedirs(tmp_path / cwd)
        monkeypatch.chdir(tmp_path / cwd)
        write_folder('data/images', seed=seed)
        dataset = folder_cache('data/images', cache)
        assert dataset.fill_reason == 'no complete cache', cwd
        rows.append(np.array(dataset.features))
    assert np.abs(rows[0] - rows[1]).max(1).min() > 0


def test_content_key_survives_touching_and_sees_restored_mtimes(tmp_path):
    data, cache = str(tmp_path / 'images'), str(tmp_path / 'cache')
    paths = write_folder(data, seed=0)
    first = folder_cache(data, cache, image_key='content')
    assert first.fill_reason == 'no complete cache'

    # Same bytes rewritten (new mtime): the content key reuses, the stat key does not.
    for path in paths:
        data_bytes = open(path, 'rb').read()
        with open(path, 'wb') as f:
            f.write(data_bytes)
        os.utime(path, ns=(1, 10**18))
    assert folder_cache(data, cache, image_key='content').fill_reason is None
    assert folder_cache(data, cache).fill_reason == 'no complete cache'

    # Other content with the old size and mtime: only the content key sees it.
    stamps = [os.stat(p).st_mtime_ns for p in paths]
    write_folder(data, seed=1)
    for path, stamp in zip(paths, stamps):
        os.utime(path, ns=(stamp, stamp))
    assert folder_cache(data, cache).fill_reason is None   # stat's known blind spot
    refilled = folder_cache(data, cache, image_key='content')
    assert refilled.fill_reason == 'no complete cache'
    assert np.abs(np.array(refilled.features) - np.array(first.features)).max(1).min() > 0


def test_unknown_image_key_and_missing_image_are_named(tmp_path):
    data = str(tmp_path / 'images')
    paths = write_folder(data, seed=0)
    with pytest.raises(ValueError, match="image_key='mtime'"):
        folder_cache(data, str(tmp_path / 'cache'), image_key='mtime')
    from mmdiffssl.datasets.feature_cache import image_identity
    os.remove(paths[3])
    with pytest.raises(FileNotFoundError, match=osp.basename(paths[3])):
        image_identity(dict(img_path=paths[3]), 'stat', 3)


def test_in_memory_images_are_hashed(tmp_path, fashion_mnist_root):
    """Fashion-MNIST's reader keeps the images in memory (no paths): a changed idx file at
    the same data_root refills the cache."""
    root = str(tmp_path / 'fashion')
    shutil.copytree(fashion_mnist_root, root)

    def cache():
        cfg = Config.fromfile(FASHION)
        cfg.feature_cache.root = str(tmp_path / 'cache')
        cfg.train_dataloader.dataset.update(data_root=root, indices=4)
        with_feature_cache(cfg)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            return DATASETS.build(cfg.train_dataloader.dataset)

    first = cache()
    old_rows = np.array(first.features)
    images = osp.join(root, 'train-images-idx3-ubyte')
    with open(images, 'r+b') as f:   # idx3: 16-byte header, then 28 x 28 uint8 per image
        f.seek(16)
        pixels = np.frombuffer(f.read(28 * 28), np.uint8)
        f.seek(16)
        f.write((255 - pixels).tobytes())   # image 0 inverted
    second = cache()
    assert second.fill_reason == 'no complete cache'
    rows = np.array(second.features)
    assert np.abs(rows[0] - old_rows[0]).max() > 0
    np.testing.assert_array_equal(rows[1:], old_rows[1:])
