"""UPerNet on the diffusion pyramid (CPU): overfit + evaluation through the tools, and a
resumed training that repeats a straight one bit for bit (fresh noise included).

The real fine-tuning config (upernet_adm-256-uncond-pyramid-ft-cp_8xb2-80k_ade20k-512x512.py)
is inherited by a small config for a generated 2-image ADE20K-layout dataset (mmseg's
ADE20KDataset, reduce_zero_label=True: label 0 is ignored, 1..3 become classes 0..2).
"""
import glob
import json
import os.path as osp

import pytest
import torch

from conftest import run_tool
from dense_data import make_ade_shapes, tiny_upernet_cfg

pytest.importorskip('mmseg')

from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

ENV = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}   # see tests/test_configs/folder_run.py
ITERS = 60


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow   # a whole train + test run of UPerNet, ~28 s of CPU
def test_upernet_overfits_and_draws(tmp_path):
    root = make_ade_shapes(str(tmp_path / 'ade'))
    config = tiny_upernet_cfg(root, ITERS)
    work = str(tmp_path / 'work')
    run_tool(['tools/train.py', config, '--work-dir', work], env=ENV)
    checkpoint = osp.join(work, f'iter_{ITERS}.pth')
    assert osp.isfile(checkpoint)
    out = osp.join(work, 'metrics.json')
    run_tool(['tools/test.py', config, checkpoint, '--work-dir', work, '--out', out,
              '--cfg-options', 'default_hooks.visualization.draw=True',
              'default_hooks.visualization.interval=1'], env=ENV)
    with open(out) as f:
        metrics = json.load(f)
    print('upernet test metrics:', metrics)
    # 3 classes present out of 150: chance is ~0; one class everywhere would be < 34
    assert metrics['mIoU'] > 60, metrics

    import cv2
    drawn = sorted(glob.glob(osp.join(work, '*', 'vis_data', 'vis_image', '*.png')))
    assert len(drawn) == 2, drawn
    for path in drawn:
        img = cv2.imread(path)
        assert img is not None and img.shape[0] == 64 and img.shape[2] == 3


class RecordLosses(Hook):
    def __init__(self):
        self.losses = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses[runner.iter] = {k: float(v) for k, v in outputs.items()}


def run(cfg):
    runner = Runner.from_cfg(cfg)
    record = RecordLosses()
    runner.register_hook(record, priority='LOWEST')
    runner.train()
    return runner, record.losses


def make_cfg(root, work_dir, iters):
    cfg = Config.fromfile(tiny_upernet_cfg(root, iters, noise='fresh'))
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'WARNING'
    cfg.default_hooks.logger.interval = 1
    return cfg


def assert_states_equal(actual, expected):
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_states_equal(actual[key], value)
        elif torch.is_tensor(value):
            assert torch.equal(actual[key], value), key
        else:
            assert actual[key] == value, key


@pytest.mark.slow   # three UPerNet runs, ~24 s of CPU (make test keeps ADM's resume test)
def test_resume_repeats_straight_run_with_fresh_noise(tmp_path):
    root = make_ade_shapes(str(tmp_path / 'ade'))
    straight, straight_losses = run(make_cfg(root, tmp_path / 'straight', 4))
    assert straight.model.backbone.noise.mode == 'fresh'
    assert not straight.model.backbone.frozen

    run(make_cfg(root, tmp_path / 'split', 2))
    cfg = make_cfg(root, tmp_path / 'split', 4)
    cfg.resume = True
    cfg.load_from = osp.join(tmp_path, 'split', 'iter_2.pth')
    resumed, resumed_losses = run(cfg)

    assert sorted(resumed_losses) == [2, 3]
    for it in (2, 3):
        assert resumed_losses[it] == straight_losses[it], it
    assert_states_equal(resumed.model.state_dict(), straight.model.state_dict())
    # the noise generator is part of that state, and it moved during training
    gen = resumed.model.backbone.noise.generator.get_state()
    assert torch.equal(gen, straight.model.backbone.noise.generator.get_state())
    assert not torch.equal(gen, torch.Generator().manual_seed(0).get_state())

