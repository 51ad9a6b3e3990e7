"""The feature cache: equality with online features, matching losses, invalidation."""
import glob
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DATASETS, RUNNERS, DefaultScope
from mmengine.runner import Runner

from conftest import ROOT, free_port
from mmdiffssl.engine.feature_cache_runner import with_feature_cache
from mmdiffssl.models.backbones import ADMBackbone

ONLINE = osp.join(ROOT, 'configs/diffssl/linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py')
CACHED = osp.join(ROOT, 'configs/diffssl/linear_adm-tiny-cached_1xb64-2e_fashion-mnist-32px.py')


@pytest.fixture(scope='module')
def unet_ckpt(tmp_path_factory):
    arch = Config.fromfile(ONLINE).model.backbone.arch
    path = str(tmp_path_factory.mktemp('unet') / 'unet.pt')
    torch.save(ADMBackbone(arch=arch, blocks=(8, ), random_init='redraw', prune=False)
               .unet.state_dict(), path)
    return path


def make_cfg(path, tmp_path, data_root, ckpt, n=48, rewrite=True):
    """A small run of ``path``; a cached config comes with the runner's rewrite applied
    unless ``rewrite=False``."""
    cfg = Config.fromfile(path)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.model.backbone.checkpoint = ckpt
    if cfg.get('feature_cache'):
        cfg.feature_cache.root = str(tmp_path / 'cache')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.update(data_root=data_root, indices=n)
        cfg[loader].num_workers = 0
        cfg[loader].batch_size = 16
        cfg[loader].sampler.shuffle = False
    cfg.train_cfg.max_epochs = 1
    cfg.log_level = 'WARNING'
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 100
    return with_feature_cache(cfg) if rewrite and cfg.get('feature_cache') else cfg


def cache_dataset(cfg):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return DATASETS.build(cfg.train_dataloader.dataset)


def test_cached_rows_equal_online_features(tmp_path, fashion_mnist_root, unet_ckpt):
    cfg = make_cfg(CACHED, tmp_path, fashion_mnist_root, unet_ckpt)
    dataset = cache_dataset(cfg)
    online = Config.fromfile(ONLINE)
    backbone_cfg = dict(online.model.backbone, checkpoint=unet_ckpt)
    backbone_cfg.pop('type')
    backbone = ADMBackbone(**backbone_cfg).eval()
    item = dataset[5]
    inner = dataset.dataset[5]
    pixels = (inner['inputs'].float()[None] - 127.5) / 127.5
    expected = torch.nn.functional.adaptive_avg_pool2d(backbone(pixels)[0], 4)[0].flatten()
    torch.testing.assert_close(item['inputs'].float().flatten(), expected, rtol=1e-3, atol=1e-3)
    assert item['inputs'].dtype == torch.float16
    assert item['data_samples'].gt_label.item() == inner['data_samples'].gt_label.item()


def test_batches_are_read_at_once_and_equal_single_items(tmp_path, fashion_mnist_root,
                                                         unet_ckpt):
    cfg = make_cfg(CACHED, tmp_path, fashion_mnist_root, unet_ckpt, n=16)
    loader_cfg = cfg.train_dataloader
    assert loader_cfg.num_workers == 0 and loader_cfg.collate_fn.type == 'default_collate'
    dataset = cache_dataset(cfg)
    labels = [int(dataset.get_data_info(i)['gt_label']) for i in range(16)]
    np.testing.assert_array_equal(dataset.labels, labels)
    batch = dataset.__getitems__([3, 0, 7])
    for item, index in zip(batch, (3, 0, 7)):
        single = dataset[index]
        torch.testing.assert_close(item['inputs'], single['inputs'], rtol=0, atol=0)
        assert item['inputs'].shape == (dataset.row_size, 1, 1)
        assert item['data_samples'].gt_label.tolist() == [labels[index]]
        assert item['data_samples'].sample_idx == index == single['data_samples'].sample_idx

    # Through the Runner's dataloader: one stacked fp16 tensor and the samples of the batch.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loader = Runner.build_dataloader(dict(loader_cfg, dataset=dataset))
    data = next(iter(loader))
    assert data['inputs'].shape == (16, dataset.row_size, 1, 1)
    assert data['inputs'].dtype == torch.float16
    np.testing.assert_array_equal(data['inputs'].flatten(1).numpy(), np.array(dataset.features))
    assert [s.gt_label.item() for s in data['data_samples']] == labels


def test_cached_loaders_drop_worker_only_options():
    cfg = Config.fromfile(CACHED)
    cfg.train_dataloader.update(num_workers=4, persistent_workers=True, prefetch_factor=2)
    with_feature_cache(cfg)
    assert cfg.train_dataloader.num_workers == 0
    assert 'persistent_workers' not in cfg.train_dataloader
    assert 'prefetch_factor' not in cfg.train_dataloader
    cfg = Config.fromfile(CACHED)
    cfg.feature_cache.num_workers = 2
    cfg.train_dataloader.persistent_workers = True
    with_feature_cache(cfg)
    assert cfg.train_dataloader.num_workers == 2 and cfg.train_dataloader.persistent_workers


def test_training_from_cache_matches_online_losses(tmp_path, fashion_mnist_root, unet_ckpt):
    losses = []
    for path in (ONLINE, CACHED):
        cfg = make_cfg(path, tmp_path / osp.basename(path), fashion_mnist_root, unet_ckpt,
                       rewrite=False)
        cfg.randomness = dict(seed=0)
        # Same head start on both sides (building the U-Net online draws from the RNG).
        cfg.model.head.init_cfg = dict(type='Constant', val=0.0, layer='Linear')
        runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
        assert type(runner).__name__ == ('FeatureCacheRunner' if path == CACHED else 'Runner')
        runner.train()
        history = runner.message_hub.get_scalar('train/loss')
        losses.append(np.array(history.data[0]))
    assert len(losses[0]) == 3
    np.testing.assert_allclose(losses[1], losses[0], atol=1e-3, rtol=0)


def test_invalid_caches_are_refilled_never_reused(tmp_path, fashion_mnist_root, unet_ckpt):
    cfg = make_cfg(CACHED, tmp_path, fashion_mnist_root, unet_ckpt, n=16)
    first = cache_dataset(cfg)
    reference = np.array(first.features)
    data_file = osp.join(first.cache_dir, 'features.npy')

    # A second use reads the cache without filling.
    assert first.fill_reason == 'no complete cache'
    again = cache_dataset(cfg)
    assert again.fill_reason is None
    np.testing.assert_array_equal(np.array(again.features), reference)
    del again

    # Truncated file -> refilled.
    with open(data_file, 'r+b') as f:
        f.truncate(os.path.getsize(data_file) - 10)
    refilled = cache_dataset(cfg)
    assert 'truncated' in refilled.fill_reason
    np.testing.assert_array_equal(np.array(refilled.features), reference)
    del refilled

    # One flipped byte -> checksum differs -> refilled.
    with open(data_file, 'r+b') as f:
        f.seek(-7, os.SEEK_END)
        byte = f.read(1)
        f.seek(-7, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0x40]))
    refilled = cache_dataset(cfg)
    assert 'checksum' in refilled.fill_reason
    np.testing.assert_array_equal(np.array(refilled.features), reference)

    # Any key field change -> another cache folder.
    for change in (dict(timesteps=(60, )), dict(noise_seed=1), dict(blocks=(9, ))):
        changed = make_cfg(CACHED, tmp_path, fashion_mnist_root, unet_ckpt, n=16)
        changed.train_dataloader.dataset.backbone.update(change)
        other = cache_dataset(changed)
        assert other.cache_dir != refilled.cache_dir, change
    changed = make_cfg(CACHED, tmp_path, fashion_mnist_root, unet_ckpt, n=12)
    assert cache_dataset(changed).cache_dir != refilled.cache_dir
    assert len(glob.glob(osp.join(str(tmp_path / 'cache'), '*'))) == 5


def test_fresh_noise_cannot_be_cached(tmp_path, fashion_mnist_root, unet_ckpt):
    cfg = make_cfg(CACHED, tmp_path, fashion_mnist_root, unet_ckpt, n=4)
    cfg.train_dataloader.dataset.backbone.noise = 'fresh'
    with pytest.raises(ValueError, match="noise='fresh' cannot be cached"):
        cache_dataset(cfg)


# slow: a 2-rank training run, ~25 s; make test keeps one 2-rank run (test_train_test.py)
@pytest.mark.slow
def test_fill_sharded_across_two_ranks(tmp_path, fashion_mnist_root, unet_ckpt):
    """Under torchrun (2 CPU ranks, gloo) each rank fills its rows; the cache equals a
    single-process fill and is reused by it."""
    import subprocess
    import sys
    work, cache = str(tmp_path / 'work'), str(tmp_path / 'cache')
    opts = [f'model.backbone.checkpoint={unet_ckpt}', f'feature_cache.root={cache}',
            f'train_dataloader.dataset.data_root={fashion_mnist_root}',
            f'val_dataloader.dataset.data_root={fashion_mnist_root}',
            f'test_dataloader.dataset.data_root={fashion_mnist_root}',
            'train_dataloader.dataset.indices=40', 'val_dataloader.dataset.indices=8',
            'test_dataloader.dataset.indices=8', 'train_dataloader.num_workers=0',
            'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
            'train_cfg.max_epochs=1']
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS='1',
               PYTHONPATH=ROOT)
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools/dist_train.sh'), CACHED, '2',
                           '--work-dir', work, '--cfg-options'] + opts,
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:]
    cfg = make_cfg(CACHED, tmp_path, fashion_mnist_root, unet_ckpt, n=40)
    single = cache_dataset(cfg)
    assert single.fill_reason is None   # the 2-rank cache is valid and reused
    rows = np.array(single.features)
    assert np.abs(rows).sum(1).min() > 0   # every row was written by one of the ranks
    backbone_cfg = dict(cfg.train_dataloader.dataset.backbone)
    backbone_cfg.pop('type')
    backbone = ADMBackbone(**backbone_cfg).eval()
    for index in (0, 1, 39):   # rows of rank 0 (0), rank 1 (1, 39)
        pixels = (single.dataset[index]['inputs'].float()[None] - 127.5) / 127.5
        expected = torch.nn.functional.adaptive_avg_pool2d(backbone(pixels)[0], 4).flatten()
        np.testing.assert_allclose(rows[index], expected.numpy(), rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize('damage', ['truncated', 'binary', 'not_a_dict', 'no_checksum'])
def test_corrupt_meta_json_is_refilled_with_a_warning(tmp_path, fashion_mnist_root, unet_ckpt,
                                                      monkeypatch, damage):
    import json
    import logging

    from mmdiffssl.datasets import feature_cache
    cfg = make_cfg(CACHED, tmp_path, fashion_mnist_root, unet_ckpt, n=8)
    first = cache_dataset(cfg)
    reference = np.array(first.features)
    meta_path = osp.join(first.cache_dir, 'meta.json')
    text = open(meta_path).read()
    del first
    if damage == 'truncated':   # e.g. a copy cut short
        damaged = text[:len(text) // 2].encode()
    elif damage == 'binary':
        damaged = b'\x00\xff\xfe' * 10
    elif damage == 'not_a_dict':
        damaged = b'[1, 2, 3]'
    else:
        meta = json.loads(text)
        meta.pop('checksum')
        damaged = json.dumps(meta).encode()
    with open(meta_path, 'wb') as f:
        f.write(damaged)

    logged = []
    real_print_log = feature_cache.print_log

    def record(msg, logger=None, level=logging.INFO):
        logged.append((msg, level))
        return real_print_log(msg, logger, level)

    monkeypatch.setattr(feature_cache, 'print_log', record)
    refilled = cache_dataset(cfg)
    assert 'meta.json' in refilled.fill_reason and 'corrupted' in refilled.fill_reason
    assert any('meta.json' in msg and 'filling it' in msg and level == logging.WARNING
               for msg, level in logged), logged
    np.testing.assert_array_equal(np.array(refilled.features), reference)
    assert json.load(open(meta_path))['file_size'] == osp.getsize(
        osp.join(refilled.cache_dir, 'features.npy'))
    del refilled
    assert cache_dataset(cfg).fill_reason is None   # the refilled cache is valid again


def test_cache_pooling_comes_from_the_head_and_a_mismatch_is_refused():
    import mmdiffssl  # noqa: F401  (registers PooledLinearHead)
    cfg = Config.fromfile(CACHED)
    assert cfg.model.head.pool_size == 4
    cfg.feature_cache.pool = 2      # a 2x2 cache under a head pooling to 4x4: upsampled maps
    with pytest.raises(ValueError, match=r'feature_cache.pool=2 but the head PooledLinearHead '
                       r'pools to 4'):
        with_feature_cache(cfg)
    cfg = Config.fromfile(CACHED)
    assert 'pool' not in cfg.feature_cache     # the config leaves it to the head
    with_feature_cache(cfg)
    assert cfg.train_dataloader.dataset.pool == 4
    assert {c for _, c, h, w in cfg.model.backbone.layout} and \
        all((h, w) == (4, 4) for _, _, h, w in cfg.model.backbone.layout)


def attention_cfgs(tmp_path, data_root, ckpt):
    """The Fashion-MNIST probe with an attention head (pool_size 16 over block 8's 8 x 8
    map), online and from a cache; the same head start on both sides."""
    cfgs = []
    for cached in (False, True):
        cfg = make_cfg(ONLINE, tmp_path / f'cached{int(cached)}', data_root, ckpt, n=32)
        cfg.model.head = dict(type='AttentionPoolHead', num_classes=10, embed_dims=32,
                              num_heads=4, num_layers=1, pool_size=16)
        cfg.randomness = dict(seed=0)
        if cached:
            cfg.runner_type = 'FeatureCacheRunner'
            cfg.feature_cache = dict(root=str(tmp_path / 'cache'))
        cfgs.append(cfg)
    return cfgs


def test_attention_head_trains_from_cache_as_online(tmp_path, fashion_mnist_root, unet_ckpt):
    """A map smaller than the head's pool is cached as it is (the head pools to
    min(size, pool_size)), so the cached run is the online run: same losses, and its head
    weights load strictly into the online model."""
    losses, runners = [], []
    for cfg in attention_cfgs(tmp_path, fashion_mnist_root, unet_ckpt):
        runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
        runner.train()
        losses.append(np.array(runner.message_hub.get_scalar('train/loss').data[0]))
        runners.append(runner)
    assert runners[1].model.backbone.layout == [(8, 64, 8, 8)]
    online, cached = (runner.model.head for runner in runners)
    assert cached.in_sizes == online.in_sizes == (8, )
    assert cached.pre_layers[0].out_size == online.pre_layers[0].out_size == (8, 8)
    online.load_state_dict(cached.state_dict(), strict=True)
    assert len(losses[0]) == 2
    np.testing.assert_allclose(losses[1], losses[0], atol=2e-3, rtol=0)


def test_a_pooled_cache_checks_the_maps_it_stores(tmp_path, fashion_mnist_root, unet_ckpt):
    """The layout comes from the native resolution; 64-pixel inputs give other maps, and the
    fill stops naming feature_cache.input_size instead of storing them under the layout."""
    cfg = attention_cfgs(tmp_path, fashion_mnist_root, unet_ckpt)[1]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.pipeline.insert(-1, dict(type='Resize', scale=64))
    with pytest.raises(ValueError, match=r'do not match the cache layout .*input_size'):
        RUNNERS.build(cfg).train()
    cfg.feature_cache.update(input_size=(64, 64), pool=16)
    runner = RUNNERS.build(cfg)
    runner.train()
    assert runner.model.backbone.layout == [(8, 64, 16, 16)]
