"""The offline install: a fresh venv from a wheelhouse, inside a network namespace.

Slow (minutes, several GB): needs a wheelhouse filled by `make wheelhouse` and named by
MMDIFFSSL_WHEELHOUSE, and `unshare -n` (root) so the network is really absent.
    MMDIFFSSL_WHEELHOUSE=wheelhouse .venv/bin/python -m pytest -m slow tests/test_setup
"""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_offline_install_from_wheelhouse(tmp_path):
    wheelhouse = os.environ.get('MMDIFFSSL_WHEELHOUSE')
    if not wheelhouse or not os.path.isdir(wheelhouse):
        pytest.skip('set MMDIFFSSL_WHEELHOUSE to a folder filled by `make wheelhouse`')
    if shutil.which('unshare') is None or os.geteuid() != 0:
        pytest.skip('needs root and unshare to cut the network')
    venv = tmp_path / 'venv'
    script = (f'VENV={venv} MMDIFFSSL_WHEELHOUSE={os.path.abspath(wheelhouse)} '
              f'MMDIFFSSL_CACHE={tmp_path / "cache"} bash tools/setup_env.sh && '
              f'{venv}/bin/python -c "import mmcv.ops, mmdet, mmseg, mmpretrain, mmdiffssl"')
    proc = subprocess.run(['unshare', '-n', 'bash', '-c', script], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-5000:]
