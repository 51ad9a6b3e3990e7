"""Block x timestep linear-probe sweep (the paper's main analysis), resumable.

    python tools/analysis/sweep_blocks_timesteps.py CONFIG --blocks 19 21 24 27 30 \
        --timesteps 10 50 100 150 300 --work-dir work_dirs/sweep [--pool 2] [--epochs 30]

CONFIG is a classification config with a frozen diffusion backbone (its blocks and timesteps
are replaced by the grid). Writes WORK_DIR/sweep.csv (appended cell by cell; a rerun skips
finished cells) and WORK_DIR/sweep.png (heatmap). Features come from a feature cache under
WORK_DIR/feature_cache (or --cache-root), one backbone pass per image for the whole grid.

WORK_DIR/sweep_key.json records what else determines the numbers (backbone config, weights
fingerprint, data preprocessor, train and val datasets, probe settings); a rerun with another
key stops with an error naming the fields that differ. With --keyed, each key gets its own
folder WORK_DIR/<key digest>/ (printed) and a rerun resumes the folder of its key.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction
from mmengine.registry import init_default_scope

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/: cli_common
from cli_common import load_config  # noqa: E402

from mmdiffssl.analysis import plot_heatmap, run_sweep  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--blocks', type=int, nargs='+', required=True)
    parser.add_argument('--timesteps', type=int, nargs='+', required=True)
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--cache-root', help='default: WORK_DIR/feature_cache')
    parser.add_argument('--pool', type=int, default=2, help='pool each map to k x k')
    parser.add_argument('--epochs', type=int, default=30)
    parser.add_argument('--lr', type=float, default=1e-2)
    parser.add_argument('--weight-decay', type=float, default=0.0)
    parser.add_argument('--keyed', action='store_true',
                        help='write into WORK_DIR/<key digest>/ instead of refusing a '
                        'WORK_DIR made with other settings')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    results = run_sweep(cfg, args.blocks, args.timesteps, args.work_dir,
                        args.cache_root or osp.join(args.work_dir, 'feature_cache'),
                        pool=args.pool, epochs=args.epochs, lr=args.lr,
                        weight_decay=args.weight_decay, keyed=args.keyed)
    png = plot_heatmap(results, osp.join(results.folder, 'sweep.png'))
    best = max(results, key=results.get)
    print(f'best: block {best[0]}, t={best[1]}: {results[best]:.2f}% top-1')
    print(f'wrote {osp.join(results.folder, "sweep.csv")} and {png}')


if __name__ == '__main__':
    main()
