"""tools/device/dense.sh (issue 22's device run) in its CPU smoke mode: the same path and
the files it writes; the out-of-memory fallbacks, the rows the preflight rules out and the
80 GB verdict with a stand-in measurement."""
import json
import os
import os.path as osp
import subprocess
import sys
import tarfile
import time

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools', 'device'))
import dense  # noqa: E402  tools/device/dense.py
import device_run  # noqa: E402

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
pytest.importorskip('mmcv.ops')

# an AMP config (run in fp32 on the CPU) and a plain one, both codebases, frozen U-Nets:
# the cheapest rows (the fine-tuned path is test_dense_gpu.py's test_dense_bench_cpu)
SMOKE_ROWS = ['mrcnn_pyramid_frozen_bf16', 'upernet_frozen']


def test_smoke_run_writes_the_files_that_come_back(tmp_path):
    out = tmp_path / 'out'
    # no deadline nor limit that 2 shared cores under load could reach
    env = dict(os.environ, OUT=str(out), SMOKE='1', WHEELS='', PYTHON=sys.executable,
               LIMIT_S='900')
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', 'device', 'dense.sh'),
                           '--rows', ','.join(SMOKE_ROWS), '--deadline-s', '900'], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=960)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert sorted(os.listdir(out)) == ['logs.tar.gz', 'preflight.json', 'results.json',
                                       'summary.md']  # the device sends 8 files back at most

    preflight = json.loads((out / 'preflight.json').read_text())
    assert preflight['device'] == 'cpu' and preflight['mmcv_ops'] == 'ok'
    assert preflight['scopes'] == dict(mmdet='ok', mmseg='ok', mmpretrain='ok')
    assert preflight['configs'] == dict(mmdet='ok', mmseg='ok')
    assert preflight['mmdet'] == '3.3.0' and preflight['mmsegmentation'] == '1.2.2'

    rows = json.loads((out / 'results.json').read_text())
    assert [r['name'] for r in rows] == SMOKE_ROWS
    amp, plain = (r['result'] for r in rows)
    for row, res in zip(rows, (amp, plain)):
        assert osp.basename(row['config']) == res['config']
        assert res['fp32'] and res['size'] == 64 and res['batch'] == 2
        assert res['s_per_iter'] > 0 and res['peak_gib'] is None and res['reserved_gib'] is None
        assert row['fits_80gb'] is None  # no GPU numbers on a CPU
        assert res['trainable_params'] > res['backbone_trainable_params'] == 0
    assert 'amp-bf16' in amp['config'] and 'mask-rcnn' in amp['config']
    assert 'upernet' in plain['config'] and 'amp' not in plain['config']

    summary = (out / 'summary.md').read_text()
    assert '| mrcnn_pyramid_frozen_bf16 | `mask-rcnn_adm-256-uncond-pyramid-frozen_fpn_8xb2-' \
           'amp-bf16-1x_coco.py` (fp32) | 2 x 1 |' in summary
    with tarfile.open(out / 'logs.tar.gz') as tar:
        names = set(tar.getnames())
        console = tar.extractfile('logs/console.txt').read().decode()
    assert {'logs/log.txt', 'logs/console.txt'} | {f'logs/{r}.json' for r in SMOKE_ROWS} \
        <= names
    assert 'done in' in console and '== upernet_frozen' in console


FAKE = dict(config='c.py', fp32=False, batch=2, accumulate=1, s_per_iter=1.0, peak_gib=70.0,
            reserved_gib=79.0, trainable_params=1, backbone_trainable_params=0,
            first_iter_s=2.0, build_s=3.0)


def fake_measure(calls, fits_at):
    """A stand-in for measure_train_step: out of memory unless the row's settings are
    those of ``fits_at`` (``(backbone, batch, accumulate)``)."""
    def measure(config, device, batch, backbone=None, accumulate=1, **kwargs):
        calls.append((osp.basename(config), backbone, batch, accumulate))
        if (backbone, batch, accumulate) != fits_at:
            raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')
        return dict(FAKE, batch=batch, accumulate=accumulate)
    return measure


def run_fake(tmp_path, monkeypatch, rows, fits_at, info=None):
    from benchmarks import dense as bench
    calls = []
    monkeypatch.setattr(bench, 'measure_train_step', fake_measure(calls, fits_at))
    rec = dense.Recorder(str(tmp_path / 'out'), str(tmp_path / 'logs'))
    dense.run_rows(rec, dense.SETTINGS['device'], 100, time.perf_counter(), rows, info=info)
    return calls, json.loads((tmp_path / 'out' / 'results.json').read_text())


def test_a_row_out_of_memory_falls_back_in_the_readme_order(tmp_path, monkeypatch):
    row = device_run.select_rows(dense.ROWS, ['mrcnn_pyramid_ft_cp_bf16'])
    calls, records = run_fake(tmp_path, monkeypatch, row,
                              fits_at=(dict(trainable_from=19), 1, 2))
    assert [c[1:] for c in calls] == [(None, 2, 1), (dict(trainable_from=19), 2, 1),
                                      (dict(trainable_from=19), 1, 2)]
    assert [r['name'] for r in records] == [
        'mrcnn_pyramid_ft_cp_bf16', 'mrcnn_pyramid_ft_cp_bf16-from19',
        'mrcnn_pyramid_ft_cp_bf16-from19-b1x2']
    assert all(r['error'].startswith('OutOfMemoryError: CUDA out of memory')
               for r in records[:2])
    assert records[2]['fits_80gb'] is False  # 79 GiB reserved > 78
    summary = (tmp_path / 'out' / 'summary.md').read_text()
    assert '| mrcnn_pyramid_ft_cp_bf16-from19 | | | OutOfMemoryError' in summary
    assert '| 1 x 2 | 1.000 | 70.00 | 79.00 | no |' in summary


def test_other_errors_and_frozen_rows_fall_back_as_they_should():
    frozen, fine_tuned = device_run.select_rows(
        dense.ROWS, ['upernet_frozen', 'upernet_ft_cp_bf16'])
    oom = torch.OutOfMemoryError('CUDA out of memory.')
    assert dense.follow_ups(fine_tuned, ValueError('bad config')) == []
    (nxt, ) = dense.follow_ups(frozen, oom)  # a frozen U-Net: only the smaller batch
    assert (nxt.name, nxt.batch, nxt.accumulate, nxt.fallbacks) == (
        'upernet_frozen-b1x2', 1, 2, ())
    assert dense.follow_ups(nxt, oom) == []


def test_mask_rcnn_rows_wait_for_mmcv_ops_and_upernet_runs(tmp_path, monkeypatch):
    rows = device_run.select_rows(dense.ROWS, ['mrcnn_b24_frozen', 'upernet_frozen'])
    info = dict(scopes=dict(mmdet='ok', mmseg='ok'), configs=dict(mmdet='ok', mmseg='ok'),
                mmcv_ops="ImportError: libcudart.so.13: cannot open shared object file")
    calls, records = run_fake(tmp_path, monkeypatch, rows, fits_at=(None, 2, 1), info=info)
    assert [c[0] for c in calls] == [osp.basename(rows[1].config)]
    assert records[0]['name'] == 'mrcnn_b24_frozen'
    assert records[0]['error'] == ("not started (needs mmcv's ops on the device: "
                                   f"{info['mmcv_ops']})")
    assert records[1]['name'] == 'upernet_frozen' and records[1]['fits_80gb'] is False


def test_rows_whose_configs_do_not_load_are_not_started(tmp_path, monkeypatch):
    rows = device_run.select_rows(dense.ROWS, ['mrcnn_b24_frozen', 'upernet_frozen'])
    error = "ModuleNotFoundError: No module named 'pkg_resources'"
    info = dict(scopes=dict(mmdet='ok', mmseg='ok'), mmcv_ops='ok',
                configs=dict(mmdet='ok', mmseg=error))
    calls, records = run_fake(tmp_path, monkeypatch, rows, fits_at=(None, 2, 1), info=info)
    assert [c[0] for c in calls] == [osp.basename(rows[0].config)]
    by_name = {r['name']: r for r in records}
    assert by_name['upernet_frozen']['error'] == (
        f'not started (mmseg configs do not load: {error})')
    assert 'error' not in by_name['mrcnn_b24_frozen']


def test_rows_and_settings():
    names = [r.name for r in dense.ROWS]
    assert names[:5] == ['mrcnn_pyramid_frozen_bf16', 'mrcnn_pyramid_ft_cp_bf16',
                         'mrcnn_b24_frozen', 'upernet_frozen', 'upernet_ft_cp_bf16']
    assert len(set(names)) == len(names)
    for row in dense.ROWS:
        assert osp.isfile(osp.join(ROOT, row.config)), row.config
        assert row.fallbacks == (dense.FINE_TUNED if '-ft-' in row.config else dense.FROZEN)
        assert ('amp-bf16' in row.config) is row.name.endswith('_bf16')
    with pytest.raises(SystemExit, match='unknown nope'):
        device_run.select_rows(dense.ROWS, ['upernet_frozen', 'nope'])
    assert dense.fits(dict(reserved_gib=78.0)) and not dense.fits(dict(reserved_gib=78.1))
    assert dense.fits(dict(reserved_gib=None)) is None
