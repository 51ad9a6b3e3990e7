"""Measure how much faster a training epoch runs from the feature cache than online.

    python tools/analysis/cache_speedup.py ONLINE_CONFIG CACHED_CONFIG [--cfg-options ...]

Both configs train the same head; the cached one reads features written by an untimed first
pass (building the train dataloader fills the cache). Each is timed for one training epoch
(no validation) in this process, and the ratio of the two epoch times is printed.
"""
import argparse
import time

from mmengine.config import DictAction
from mmengine.runner import Runner

from mmdiffssl.apis import load_config


def epoch_seconds(cfg, work_dir):
    cfg.work_dir = work_dir
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 1000
    cfg.default_hooks.checkpoint.interval = 1000
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None  # time training alone
    runner = Runner.from_cfg(cfg)
    runner.train_loop  # noqa: B018  (builds the dataset, filling the cache: untimed)
    start = time.perf_counter()
    runner.train()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('online_config')
    parser.add_argument('cached_config')
    parser.add_argument('--work-dir', default='work_dirs/cache_speedup')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    online = epoch_seconds(load_config(args.online_config, args.cfg_options),
                           f'{args.work_dir}/online')
    cached = epoch_seconds(load_config(args.cached_config, args.cfg_options),
                           f'{args.work_dir}/cached')
    print(f'online epoch: {online:.2f} s, cached epoch: {cached:.2f} s, '
          f'speed-up: {online / cached:.1f}x')


if __name__ == '__main__':
    main()
