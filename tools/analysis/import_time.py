"""Time ``import`` statements in fresh processes: wall and CPU (user + sys) medians.

    python tools/analysis/import_time.py [--runs 5] ["import torch, mmengine" "import mmdiffssl" ...]

Each statement runs ``--runs`` times in a new interpreter (this one); the CPU time comes from
the child's resource usage, so it is less sensitive than the wall time to other load.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

DEFAULT = ('import torch, mmengine', 'import mmdiffssl', 'import mmdiffssl, mmpretrain.models')


def time_statement(code):
    """(wall seconds, CPU seconds) of one fresh ``python -c code``."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, '-c', code])
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise RuntimeError(f'python -c {code!r} failed (status {status})')
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('statements', nargs='*', default=DEFAULT)
    parser.add_argument('--runs', type=int, default=5)
    args = parser.parse_args(argv)
    print(f'load average {os.getloadavg()[0]:.1f}, {args.runs} runs each, median')
    for code in args.statements:
        runs = [time_statement(code) for _ in range(args.runs)]
        print(f'{code!r}: wall {statistics.median(r[0] for r in runs):.2f} s, '
              f'cpu {statistics.median(r[1] for r in runs):.2f} s')


if __name__ == '__main__':
    main()
