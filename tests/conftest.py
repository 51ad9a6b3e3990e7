"""Shared fixtures: the repo root, the venv's python, Fashion-MNIST in a temp data root.

``tools/`` is put on ``sys.path`` as the tools' own scripts have it, for ``cli_common``.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))  # the tools' shared module, cli_common


def run_tool(args, cwd=None, env=None, timeout=900):
    """Run a command with the current interpreter and the repo on PYTHONPATH; return stdout.

    Raises AssertionError with the tail of the output when the command fails.
    """
    full_env = dict(os.environ)
    full_env['PYTHONPATH'] = os.pathsep.join(
        [ROOT, osp.join(ROOT, 'tests', 'helpers'), full_env.get('PYTHONPATH', '')])
    full_env.update(env or {})
    proc = subprocess.run([sys.executable] + list(args), cwd=cwd or ROOT, env=full_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f'{args} failed ({proc.returncode}):\n{proc.stdout[-6000:]}'
    return proc.stdout


@pytest.fixture(scope='session')
def fashion_mnist_root(tmp_path_factory):
    """Fashion-MNIST idx files (from Debian's package) in a temp folder, for FashionMNIST."""
    from mmdiffssl.datasets import prepare_fashion_mnist
    from mmdiffssl.datasets.fashion_mnist import DEBIAN_FASHION_MNIST
    if not osp.isdir(DEBIAN_FASHION_MNIST):
        pytest.skip('needs Debian dataset-fashion-mnist (tools/setup_env.sh installs it)')
    return prepare_fashion_mnist(str(tmp_path_factory.mktemp('fashion_mnist')))


@pytest.fixture(scope='module')
def one_thread():
    """One intra-op thread for a test module: small ops on 2 shared cores run faster without
    threads fighting other jobs. Use ``pytestmark = pytest.mark.usefixtures('one_thread')``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
