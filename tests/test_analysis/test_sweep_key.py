"""The sweep's results are keyed by what determines them: a rerun in the same work dir with
another checkpoint, data split or probe setting is refused with an error naming the fields,
instead of returning the first run's numbers (``sweep.csv`` rows are keyed by (block, t))."""
import json
import os.path as osp

import pytest
import torch

from conftest import ROOT, run_tool, run_tool_result

DEMO_CFG = osp.join(ROOT, 'configs/diffssl/linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py')
SWEEP = osp.join(ROOT, 'tools/analysis/sweep_blocks_timesteps.py')


def unet_checkpoint(path, seed):
    """A checkpoint of the demo arch's U-Net (re-drawn with ``seed``), as DDPMPretrainer
    saves it (``state_dict`` with the ``unet.`` prefix)."""
    from mmengine.config import Config
    from mmdiffssl.models.backbones import ADMBackbone
    arch = Config.fromfile(DEMO_CFG).model.backbone.arch
    unet = ADMBackbone(arch=dict(arch), blocks=(4, ), timesteps=(10, ), random_init='redraw',
                       init_seed=seed, prune=False).unet
    torch.save({'state_dict': {'unet.' + k: v for k, v in unet.state_dict().items()}}, path)
    return str(path)


def sweep_args(work, data_root, *options, train=64):
    return [SWEEP, DEMO_CFG, '--blocks', '4', '--timesteps', '10', '--work-dir', work,
            '--pool', '2', '--epochs', '2', '--cfg-options',
            f'train_dataloader.dataset.data_root={data_root}',
            f'val_dataloader.dataset.data_root={data_root}',
            f'train_dataloader.dataset.indices={train}', 'val_dataloader.dataset.indices=32',
            *options]


def test_rerun_with_another_checkpoint_is_refused(tmp_path, fashion_mnist_root):
    work = str(tmp_path / 'sweep')
    first = unet_checkpoint(tmp_path / 'a.pth', seed=1)
    second = unet_checkpoint(tmp_path / 'b.pth', seed=2)
    ckpt = ['model.backbone.checkpoint_prefix=unet.']
    out = run_tool(sweep_args(work, fashion_mnist_root, f'model.backbone.checkpoint={first}',
                              *ckpt))
    assert 'best: block 4, t=10' in out

    # the same checkpoint again: the stored cell is reused
    out = run_tool(sweep_args(work, fashion_mnist_root, f'model.backbone.checkpoint={first}',
                              *ckpt))
    assert 'best: block 4, t=10' in out

    # another checkpoint in the same work dir: refused, naming the weights
    code, out = run_tool_result(sweep_args(work, fashion_mnist_root,
                                       f'model.backbone.checkpoint={second}', *ckpt))
    assert code != 0, out[-2000:]
    assert 'SweepKeyMismatch' in out and 'weights: "file:' in out, out[-2000:]
    with open(osp.join(work, 'sweep.csv')) as f:
        assert len(f.read().split()) == 2   # header + the first run's one cell, unchanged
    with open(osp.join(work, 'sweep_key.json')) as f:
        assert json.load(f)['weights'].startswith('file:')


def test_other_data_split_or_probe_setting_is_refused(tmp_path, fashion_mnist_root):
    from mmdiffssl.analysis import SweepKeyMismatch, run_sweep
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    work = str(tmp_path / 'sweep')
    cache = str(tmp_path / 'cache')

    def cfg(train):
        cfg = Config.fromfile(DEMO_CFG)
        cfg.merge_from_dict({
            'train_dataloader.dataset.data_root': fashion_mnist_root,
            'val_dataloader.dataset.data_root': fashion_mnist_root,
            'train_dataloader.dataset.indices': train, 'val_dataloader.dataset.indices': 32})
        return cfg

    first = run_sweep(cfg(64), [4], [10], work, cache, pool=2, epochs=2)
    with pytest.raises(SweepKeyMismatch, match=r'train\.indices: 64 -> 48'):
        run_sweep(cfg(48), [4], [10], work, cache, pool=2, epochs=2)
    with pytest.raises(SweepKeyMismatch, match=r'probe\.lr: 0\.01 -> 0\.1'):
        run_sweep(cfg(64), [4], [10], work, cache, pool=2, epochs=2, lr=0.1)
    assert run_sweep(cfg(64), [4], [10], work, cache, pool=2, epochs=2) == first

    # keyed: each key gets its own folder; the first key's folder is found again
    a = run_sweep(cfg(64), [4], [10], work, cache, pool=2, epochs=2, keyed=True)
    b = run_sweep(cfg(48), [4], [10], work, cache, pool=2, epochs=2, keyed=True)
    assert a.folder != b.folder and osp.dirname(a.folder) == work
    assert run_sweep(cfg(64), [4], [10], work, cache, pool=2, epochs=2, keyed=True).folder \
        == a.folder


def test_csv_without_key_is_refused(tmp_path, fashion_mnist_root):
    from mmdiffssl.analysis import SweepKeyMismatch
    from mmdiffssl.analysis.sweep import check_sweep_key
    (tmp_path / 'sweep.csv').write_text('block,timestep,top1\n4,10,50.0\n')
    with pytest.raises(SweepKeyMismatch, match='has no sweep_key.json'):
        check_sweep_key(str(tmp_path), dict(version=1))
