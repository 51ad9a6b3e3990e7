"""Train a model from an mmpretrain, mmdet or mmsegmentation config (mmengine Runner).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                 [--cfg-options k=v ...] [--launcher pytorch]
"""
import argparse

import mmdiffssl  # noqa: F401  (registers mmdiffssl's modules)
from cli_common import add_runner_arguments, build_runner, enable_amp, load_config, set_resume


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or without a value from the '
                        'latest checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision training')
    return add_runner_arguments(parser).parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.amp:
        enable_amp(cfg)
    set_resume(cfg, args.resume)
    build_runner(cfg).train()


if __name__ == '__main__':
    main()
