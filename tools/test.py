"""Evaluate a checkpoint with the config's test dataloader and metrics (mmengine Runner).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out metrics.json]
                                           [--cfg-options k=v ...] [--launcher pytorch]

Prints the metrics as one JSON line (``metrics: {...}``) after mmengine's own log, and writes
them to ``--out`` when given.
"""
import argparse
import json
import os.path as osp

from cli_common import add_runner_arguments, build_runner, enable_visualization, load_config
from mmengine.dist import is_main_process

import mmdiffssl  # noqa: F401  (registers mmdiffssl's modules)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    parser.add_argument('--show-dir', help='draw predictions (detection/segmentation '
                        'overlays) as PNG into this folder')
    return add_runner_arguments(parser).parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        enable_visualization(cfg, args.show_dir)
    metrics = build_runner(cfg).test()
    if is_main_process():
        metrics = {k: float(v) if hasattr(v, '__float__') else v for k, v in metrics.items()}
        print('metrics: ' + json.dumps(metrics, sort_keys=True), flush=True)
        if args.out:
            with open(args.out, 'w') as f:
                json.dump(metrics, f, indent=2, sort_keys=True)


if __name__ == '__main__':
    main()
