"""Cached variants are plain config (``runner_type='FeatureCacheRunner'``): the upstream
train/test tools, ``RUNNERS.build``, our tools, saved work-dir configs, the sweep and the
inferencer all use them as they are."""
import glob
import json
import os.path as osp

import mmpretrain
import pytest
from mmengine.config import Config
from mmengine.registry import RUNNERS, init_default_scope

from conftest import ROOT, run_tool

ONLINE = osp.join(ROOT, 'configs/diffssl/linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py')
CACHED = osp.join(ROOT, 'configs/diffssl/linear_adm-tiny-cached_1xb64-2e_fashion-mnist-32px.py')
UPSTREAM = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools')


def small(data_root, cache_root):
    """Overrides of a 1-epoch run on 64 / 32 / 32 images with its cache under cache_root."""
    options = {f'{split}_dataloader.dataset.data_root': data_root
               for split in ('train', 'val', 'test')}
    options.update({'train_dataloader.dataset.indices': 64, 'val_dataloader.dataset.indices': 32,
                    'test_dataloader.dataset.indices': 32, 'train_dataloader.batch_size': 32,
                    'train_cfg.max_epochs': 1, 'feature_cache.root': cache_root,
                    'randomness.seed': 0})
    return options


def as_arguments(options):
    return ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]


def cache_files(cache_root):
    return sorted(glob.glob(osp.join(cache_root, '*', 'features.npy')))


def test_upstream_tools_write_reuse_and_test_a_cached_config(tmp_path, fashion_mnist_root):
    cache, work = str(tmp_path / 'cache'), str(tmp_path / 'work')
    options = as_arguments(small(fashion_mnist_root, cache))
    out = run_tool([osp.join(UPSTREAM, 'train.py'), CACHED, '--work-dir', work] + options,
                   fresh_process=True)
    files = cache_files(cache)
    assert len(files) == 2, files      # the train split, and the val/test split (same images)
    assert out.count('; filling it') == 2
    stamps = [osp.getmtime(f) for f in files]

    # The dumped work-dir config is the config as written: it runs again, reading the cache.
    saved = osp.join(work, osp.basename(CACHED))
    assert Config.fromfile(saved).runner_type == 'FeatureCacheRunner'
    again = run_tool([osp.join(UPSTREAM, 'train.py'), saved, '--work-dir', work + '2'])
    assert '; filling it' not in again
    assert [osp.getmtime(f) for f in files] == stamps and cache_files(cache) == files

    ckpt = osp.join(work, 'epoch_1.pth')
    metrics = str(tmp_path / 'metrics.json')
    run_tool(['tools/test.py', saved, ckpt, '--work-dir', work, '--out', metrics])
    top1 = json.load(open(metrics))['accuracy/top1']
    upstream = run_tool([osp.join(UPSTREAM, 'test.py'), saved, ckpt, '--work-dir', work])
    assert f'accuracy/top1: {top1:.4f}' in upstream
    assert cache_files(cache) == files and [osp.getmtime(f) for f in files] == stamps


def test_runners_build_from_cfg_and_our_train_tool(tmp_path, fashion_mnist_root):
    cfg = Config.fromfile(CACHED)
    cfg.merge_from_dict(small(fashion_mnist_root, str(tmp_path / 'cache')))
    cfg.work_dir = str(tmp_path / 'work')
    runner = RUNNERS.build(cfg)
    assert type(runner).__name__ == 'FeatureCacheRunner'
    assert type(runner.model.backbone).__name__ == 'CachedFeatures'
    assert runner.cfg.model.backbone.type == 'ADMBackbone'   # the config as written
    runner.train()
    files = cache_files(str(tmp_path / 'cache'))
    assert len(files) == 2
    stamps = [osp.getmtime(f) for f in files]

    # The runner class's own from_cfg, as a Python user calls it, reuses the cache.
    from mmdiffssl.engine import FeatureCacheRunner
    cfg.work_dir = str(tmp_path / 'from_cfg')
    again = FeatureCacheRunner.from_cfg(cfg)
    again.train()
    assert again.train_dataloader.dataset.fill_reason is None
    assert [osp.getmtime(f) for f in files] == stamps

    out = run_tool(['tools/train.py', CACHED, '--work-dir', str(tmp_path / 'ours')]
                   + as_arguments(small(fashion_mnist_root, str(tmp_path / 'cache'))))
    assert '; filling it' not in out


def test_a_cache_is_never_ignored():
    from cli_common import load_config

    from mmdiffssl.engine import FeatureCacheRunner
    with pytest.raises(ValueError, match=r"feature_cache is set but runner_type=None: .*"
                       r"runner_type='FeatureCacheRunner'"):
        load_config(CACHED, {'runner_type': None})
    cfg = Config.fromfile(ONLINE)
    cfg.work_dir = '/tmp/unused'
    with pytest.raises(ValueError, match=r'needs feature_cache=dict\(root=\.\.\.\) or '
                       r'teacher_cache'):
        FeatureCacheRunner.from_cfg(cfg)


def test_sweep_runs_on_a_cached_config(tmp_path, fashion_mnist_root):
    from mmdiffssl.analysis import run_sweep
    init_default_scope('mmpretrain')
    results = {}
    for path in (ONLINE, CACHED):
        cfg = Config.fromfile(path)
        cfg.merge_from_dict({k: v for k, v in small(fashion_mnist_root, 'unused').items()
                             if k != 'feature_cache.root' or path == CACHED})
        results[path] = dict(run_sweep(cfg, [4], [10], str(tmp_path / osp.basename(path)),
                                       str(tmp_path / 'sweep_cache'), pool=2, epochs=2))
    assert results[ONLINE] == results[CACHED] and len(results[ONLINE]) == 1


def test_inferencer_runs_the_saved_config_of_a_cached_run(tmp_path, fashion_mnist_root):
    """The saved config's model and pipeline are the online ones: new images go through the
    backbone, and the head trained from the cache classifies them."""
    import numpy as np
    from mmpretrain.apis import ImageClassificationInferencer
    cfg = Config.fromfile(CACHED)
    cfg.merge_from_dict(small(fashion_mnist_root, str(tmp_path / 'cache')))
    cfg.work_dir = str(tmp_path / 'work')
    runner = RUNNERS.build(cfg)
    runner.train()
    saved = osp.join(cfg.work_dir, osp.basename(CACHED))
    inferencer = ImageClassificationInferencer(saved, pretrained=osp.join(cfg.work_dir,
                                                                          'epoch_1.pth'))
    image = np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    result = inferencer(image)[0]
    assert len(result['pred_scores']) == 10
    head = runner.model.head.state_dict()
    for key, value in inferencer.model.head.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), head[key].numpy())
