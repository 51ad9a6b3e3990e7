"""tools/device/speed.sh (issue 21's device run) in its CPU smoke mode: the same path, the
files it writes, the deadline and the targets."""
import json
import os
import os.path as osp
import subprocess
import sys
import tarfile
import time

import pytest

from conftest import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools', 'device'))
import speed  # noqa: E402  tools/device/speed.py


def test_smoke_run_writes_the_files_that_come_back(tmp_path):
    out = tmp_path / 'out'
    env = dict(os.environ, OUT=str(out), SMOKE='1', WHEELS='', PYTHON=sys.executable)
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', 'device', 'speed.sh'),
                           '--rows', 'block24_compiled'], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert sorted(os.listdir(out)) == ['logs.tar.gz', 'preflight.json', 'results.json',
                                       'summary.md']  # the device sends 8 files back at most

    preflight = json.loads((out / 'preflight.json').read_text())
    assert preflight['device'] == 'cpu' and preflight['param_device'] == 'cpu'
    assert preflight['build_on_device']
    assert preflight['feature_shape'] == [1, 2, 128, 2, 2]  # (T, B, C, H, W) of block 24

    (row, ) = json.loads((out / 'results.json').read_text())
    assert row['name'] == 'block24_compiled' and row['target'] == 'block24'
    cfg = row['result']['config']
    assert cfg['compile'] and cfg['compile_backend'] == 'aot_eager' and cfg['build_on_device']
    assert cfg['blocks'] == [24] and cfg['timesteps'] == [150] and cfg['batch'] == 2
    assert cfg['checkpoint'].endswith('adm256_redrawn_seed0.pt')  # drawn once, saved
    assert not osp.exists(cfg['checkpoint'])  # and removed at the end
    ours, ref = row['result']['ours'], row['result']['reference']
    assert ours['pruned'] and ours['img_per_s'] > 0 and ref['img_per_s'] > 0
    assert 'profile' not in ours  # moved into the logs
    assert row['checks']['speed'][:2] == [pytest.approx(ours['img_per_s'] / ref['img_per_s']),
                                          10.0]
    assert 'memory' not in row['checks']  # no peak memory on a CPU
    assert row['result']['agreement']['ours_fp32_vs_reference_fp32']['24']['min'] > 0.99999

    summary = (out / 'summary.md').read_text()
    assert '| block24_compiled | fp32 |' in summary and '(>= 10x)' in summary

    with tarfile.open(out / 'logs.tar.gz') as tar:
        names = set(tar.getnames())
        assert {'logs/log.txt', 'logs/console.txt', 'logs/block24_compiled.json',
                'logs/block24_compiled_profile.txt'} <= names
        profile = tar.extractfile('logs/block24_compiled_profile.txt').read().decode()
        console = tar.extractfile('logs/console.txt').read().decode()
    assert 'aten::convolution' in profile and 'Torch-Compiled Region' in profile
    assert 'done in' in console and '== block24_compiled' in console
    assert 'weights: re-drawn (seed 0) and saved' in console


def test_no_row_starts_after_the_deadline(tmp_path):
    rec = speed.Recorder(str(tmp_path / 'out'), str(tmp_path / 'logs'))
    speed.run_rows(rec, speed.SETTINGS['smoke'], deadline_s=10,
                   start=time.perf_counter() - 11, rows=speed.ROWS[:2])
    rows = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert [r['name'] for r in rows] == ['block24_compiled', 'full_compiled']
    assert all(r['error'] == 'not started (deadline 10 s)' for r in rows)
    assert '| full_compiled | | not started (deadline 10 s) |' in (
        tmp_path / 'out' / 'summary.md').read_text()


def fake_result(speedup, memory):
    return dict(ratio=dict(img_per_s=speedup, peak_mem=memory))


def test_targets():
    assert speed.verdict(fake_result(10.0, 1 / 3), 'block24') == dict(
        speed=(10.0, 10.0, True), memory=(1 / 3, 1 / 3, True))
    checks = speed.verdict(fake_result(9.9, 0.34), 'block24')
    assert not checks['speed'][2] and not checks['memory'][2]
    assert speed.verdict(fake_result(3.1, 0.9), 'full') == dict(speed=(3.1, 3.0, True))
    assert not speed.verdict(fake_result(3.9, None), 'difformer')['speed'][2]


def test_a_row_that_would_end_after_the_limit_is_not_started():
    assert speed.skip_reason(100, None, 1, deadline_s=200, limit_s=270) is None
    assert speed.skip_reason(201, None, 1, 200, 270) == 'deadline 200 s'
    # a compiled single-t row took 60 s: another fits at 200 s, a 3-t one (about 120 s) not
    assert speed.skip_reason(200, (60, 1), 1, 250, 270) is None
    assert speed.skip_reason(200, (60, 1), 3, 250, 270) == \
        'would end at about 320 s > limit 270 s'


def test_preflight_falls_back_to_a_cpu_build(tmp_path, monkeypatch):
    """Where building under ``torch.device(device)`` fails, the rows build on the CPU."""
    from mmdiffssl.models import backbones
    real, calls = backbones.ADMBackbone, []

    def first_build_fails(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise RuntimeError('no build here')
        return real(**kwargs)

    monkeypatch.setattr(backbones, 'ADMBackbone', first_build_fails)
    rec = speed.Recorder(str(tmp_path / 'out'), str(tmp_path / 'logs'))
    info = speed.preflight(rec, speed.SETTINGS['smoke'])
    assert len(calls) == 2 and calls[0] == calls[1]
    assert not info['build_on_device'] and info['build_error'] == 'RuntimeError: no build here'
    assert info['feature_shape'] == [1, 2, 128, 2, 2]
    assert json.loads((tmp_path / 'out' / 'preflight.json').read_text()) == info
