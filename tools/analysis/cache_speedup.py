"""Measure how much faster a training epoch runs from the feature cache than online.

    python tools/analysis/cache_speedup.py ONLINE_CONFIG [CACHED_CONFIG] [--images N]
        [--image-size S] [--work-dir D] [--cfg-options ...]

Both sides train the same head through mmengine's Runner in this process. Online, every
iteration runs the frozen backbone; cached, every iteration reads rows of the feature cache,
which building the train dataloader fills beforehand (untimed). Without CACHED_CONFIG the
cached side is ONLINE_CONFIG plus ``runner_type='FeatureCacheRunner'`` and
``feature_cache=dict(root=WORK_DIR/feature_cache, pool=<the head's pool_size or --pool>)``. ``--cfg-options`` apply to both sides.

Each side is timed for one training epoch, from ``before_train_epoch`` to
``after_train_epoch``: data loading, forward, backward, optimizer step and the per-iteration
hooks, without validation or checkpoint saving. Printed: both epoch times, the time per
image and their ratio.

``--images N`` trains on N generated random RGB images (two classes, ``--image-size`` pixels,
PNG in WORK_DIR/images, loaded with LoadImageFromFile + PackInputs) instead of the config's
training set: for settings whose data is not on the machine, e.g. the paper's adm-256-uncond
at 256 px with ``model.backbone.checkpoint=None model.backbone.random_init=redraw``.
"""
import argparse
import copy
import gc
import os
import os.path as osp
import sys
import time

import numpy as np
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/: cli_common
from cli_common import build_runner, load_config  # noqa: E402


class EpochTimer(Hook):
    """Wall time of each training epoch (registered with the highest priority, so it starts
    before and stops before every other hook of the epoch's start and end)."""

    def __init__(self):
        self.seconds = []

    def before_train_epoch(self, runner):
        self._start = time.perf_counter()

    def after_train_epoch(self, runner):
        self.seconds.append(time.perf_counter() - self._start)


def write_images(folder, num, size, seed=0):
    """``num`` random RGB PNGs of ``size`` x ``size``, alternating between two class folders."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for i in range(num):
        path = osp.join(folder, f'class_{i % 2}', f'{i:05d}.png')
        os.makedirs(osp.dirname(path), exist_ok=True)
        if not osp.isfile(path):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return folder


def duration(seconds):
    """``'22.65 s'``, ``'6.159 ms'``: four significant digits in s or ms."""
    return f'{seconds:.4g} s' if seconds >= 1 else f'{seconds * 1e3:.4g} ms'


def epoch_seconds(cfg, work_dir):
    """Seconds of one training epoch of ``cfg`` (its train dataset is built untimed first)."""
    cfg.work_dir = work_dir
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 1000
    cfg.default_hooks.checkpoint = None
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None  # time training alone
    runner = build_runner(cfg)
    timer = EpochTimer()
    runner.register_hook(timer, priority='HIGHEST')
    runner.train_loop  # noqa: B018  (builds the dataset, filling the cache: untimed)
    num_images = len(runner.train_dataloader.dataset)
    runner.train()
    del runner
    gc.collect()
    return timer.seconds[0], num_images


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('online_config')
    parser.add_argument('cached_config', nargs='?',
                        help='default: ONLINE_CONFIG with feature_cache added')
    parser.add_argument('--pool', type=int,
                        help='feature_cache.pool without CACHED_CONFIG (default: the head\'s '
                        'pool_size)')
    parser.add_argument('--images', type=int, help='train on this many generated images')
    parser.add_argument('--image-size', type=int, default=256)
    parser.add_argument('--work-dir', default='work_dirs/cache_speedup')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = parser.parse_args(argv)

    options = dict(args.cfg_options)
    if args.images:
        root = write_images(osp.join(args.work_dir, 'images'), args.images, args.image_size)
        options['train_dataloader.dataset'] = dict(
            _delete_=True, type='CustomDataset', data_root=root,
            pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])
    online_cfg = Config.fromfile(args.online_config)
    online_cfg.merge_from_dict(copy.deepcopy(options))
    if online_cfg.get('feature_cache'):
        raise ValueError('ONLINE_CONFIG (with --cfg-options) sets feature_cache: the online '
                         'side must extract features online')
    cached_path, cached_options = args.cached_config, copy.deepcopy(options)
    if cached_path is None:
        pool = args.pool or online_cfg.model.get('head', {}).get('pool_size')
        if pool is None:
            raise ValueError('give CACHED_CONFIG or --pool (the head has no pool_size)')
        cached_path = args.online_config
        cached_options['feature_cache'] = dict(root=osp.join(args.work_dir, 'feature_cache'),
                                               pool=pool)
        cached_options['runner_type'] = 'FeatureCacheRunner'

    online, n = epoch_seconds(load_config(args.online_config, copy.deepcopy(options)),
                              osp.join(args.work_dir, 'online'))
    cached, n_cached = epoch_seconds(load_config(cached_path, cached_options),
                                     osp.join(args.work_dir, 'cached'))
    if n != n_cached:
        raise ValueError(f'the online epoch had {n} images, the cached one {n_cached}')
    print(f'{n} images: online {duration(online / n)}/image, '
          f'cached {duration(cached / n)}/image')
    print(f'online epoch: {online:.4g} s, cached epoch: {cached:.4g} s, '
          f'speed-up: {online / cached:.1f}x')


if __name__ == '__main__':
    main()
