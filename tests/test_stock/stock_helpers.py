"""Shared pieces of tests/test_stock: the installed packages' own tools, fresh processes,
and the tiny data and configs of tests/test_dense and tests/test_configs."""
import glob
import importlib.util
import os.path as osp
import sys

from conftest import ROOT, run_tool

# the tiny datasets and configs the dense and folder tests already use
for _folder in ('test_dense', 'test_configs'):
    if osp.join(ROOT, 'tests', _folder) not in sys.path:
        sys.path.append(osp.join(ROOT, 'tests', _folder))

# one intra-op thread (see tests/test_configs/folder_run.py)
ENV = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}


def stock_tool(package, name):
    """``<site-packages>/<package>/.mim/tools/<name>.py`` of the installed package."""
    spec = importlib.util.find_spec(package)
    path = osp.join(osp.dirname(spec.origin), '.mim', 'tools', f'{name}.py')
    assert osp.isfile(path), f'{package} ships no {name}.py: {path}'
    return path


def run_python(code, cwd, timeout=600):
    """Run ``code`` in a fresh interpreter in ``cwd`` (mmdiffssl importable, not imported);
    return its stdout."""
    return run_tool(['-c', code], cwd=str(cwd), env=ENV, timeout=timeout)


def publish(run_checkpoint, out_file):
    """tools/publish_model.py on ``run_checkpoint``; returns the release file's path."""
    log = run_tool([osp.join(ROOT, 'tools', 'publish_model.py'), run_checkpoint, out_file],
                   env=ENV, fresh_process=True)
    stem = out_file[:-len('.pth')]
    found = glob.glob(f'{glob.escape(stem)}-*.pth')
    assert len(found) == 1 and f'release checkpoint: {found[0]}' in log, (found, log)
    return found[0]


def drawn_pngs(folder):
    return sorted(glob.glob(osp.join(folder, '**', '*.png'), recursive=True))
