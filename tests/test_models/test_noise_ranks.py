"""Fresh noise (and DDPM timesteps) per rank: each rank draws its own stream, whenever the
model was built, and a resumed run draws on every rank what the straight run drew."""
import os
import os.path as osp
import subprocess
import sys
import warnings

import pytest
import torch

from conftest import ROOT, free_port
from mmdiffssl.models.noise import DiffusionNoise
from mmdiffssl.models.pretrainers import TimestepSampler

PRETRAIN = osp.join(ROOT, 'configs/pretrain/ddpm_adm-tiny_1xb64-5e_fashion-mnist-32px.py')


def torchrun(args, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(
        [ROOT, osp.join(ROOT, 'tests', 'helpers')]))
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
                           '2', '--master_port', str(free_port())] + args, cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout


# slow: two 2-rank torchrun processes, ~30 s; make test keeps one 2-rank run (test_train_test.py)
@pytest.mark.slow
def test_models_built_before_the_process_group_draw_per_rank_and_resume(tmp_path):
    script = osp.join(ROOT, 'tests', 'helpers', 'noise_ranks.py')
    torchrun([script, 'straight', str(tmp_path)])
    torchrun([script, 'resume', str(tmp_path)])
    straight = [torch.load(str(tmp_path / f'rank{r}_straight.pt')) for r in (0, 1)]
    resumed = [torch.load(str(tmp_path / f'rank{r}_resume.pt')) for r in (0, 1)]
    for step in range(6):   # the ranks' streams differ: backbone noise, DDPM noise and t
        for a, b in zip(straight[0][step], straight[1][step]):
            assert not torch.equal(a, b), step
    for rank in (0, 1):   # after resuming, each rank continues its own stream
        for step in range(3):
            for a, b in zip(resumed[rank][step], straight[rank][3 + step]):
                assert torch.equal(a, b), (rank, step)
    # rank 0 alone (the stream of a one-process run) is seed + 0
    single = DiffusionNoise('fresh', 5).train()
    assert torch.equal(straight[0][0][0], single.sample((2, 3, 4, 4), 'cpu', torch.float32))


# slow: three 2-rank pretraining runs, ~85 s; make test keeps one 2-rank run (test_train_test.py)
@pytest.mark.slow
def test_ddpm_pretraining_under_torchrun_resumes_every_rank(tmp_path, fashion_mnist_root):
    """tools/train.py, 2 CPU ranks: 4 iterations straight, or 2 then --resume for 2 more."""
    config = tmp_path / 'record.py'
    config.write_text(f"_base_ = {PRETRAIN!r}\n"
                      "custom_imports = dict(imports=['mmdiffssl', 'noise_record_hook'])\n"
                      "custom_hooks = [dict(type='NoiseRecordHook')]\n")
    options = ['--cfg-options', f'train_dataloader.dataset.data_root={fashion_mnist_root}',
               'train_dataloader.dataset.indices=32', 'train_dataloader.batch_size=8',
               'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False']
    train = [osp.join(ROOT, 'tools/train.py'), str(config), '--launcher', 'pytorch']
    torchrun(train + ['--work-dir', str(tmp_path / 'straight')] + options
             + ['train_cfg.max_epochs=2'])
    split = str(tmp_path / 'split')
    torchrun(train + ['--work-dir', split] + options + ['train_cfg.max_epochs=1'])
    torchrun(train + ['--work-dir', split, '--resume', osp.join(split, 'epoch_1.pth')]
             + options + ['train_cfg.max_epochs=2'])
    straight = [torch.load(str(tmp_path / 'straight' / f'rank{r}_draws.pt')) for r in (0, 1)]
    resumed = [torch.load(osp.join(split, f'rank{r}_draws.pt')) for r in (0, 1)]
    assert sorted(straight[0]) == [0, 1, 2, 3] and sorted(resumed[0]) == [2, 3]
    for it in range(4):
        assert not torch.equal(straight[0][it][0], straight[1][it][0]), it   # noise
    assert any(not torch.equal(straight[0][it][1], straight[1][it][1]) for it in range(4))
    for rank in (0, 1):
        for it in (2, 3):
            for a, b in zip(resumed[rank][it], straight[rank][it]):
                assert torch.equal(a, b), (rank, it)


def test_single_state_checkpoints_still_load():
    """Checkpoints written before per-rank streams hold one generator state (a uint8 tensor,
    or a dict): one process continues it exactly, and saves it in the same format."""
    old_stream = torch.Generator().manual_seed(3)
    torch.randn(4, generator=old_stream)
    state = old_stream.get_state()
    expected = [torch.randn(8, generator=old_stream) for _ in range(2)]
    for old in (state, {'generator_state': state}):
        noise = DiffusionNoise('fresh', 3).train()
        with warnings.catch_warnings():
            warnings.simplefilter('error')   # one process, one state: no warning
            noise.load_state_dict({'_extra_state': old})
        assert torch.equal(noise.sample((8, ), 'cpu', torch.float32), expected[0])
        saved = noise.state_dict()['_extra_state']
        assert saved.dtype == torch.uint8
        resumed = DiffusionNoise('fresh', 3).train()
        resumed.load_state_dict({'_extra_state': saved})
        assert torch.equal(resumed.sample((8, ), 'cpu', torch.float32), expected[1])

    noise = DiffusionNoise('fresh', 3, rank=1).train()   # rank 1 cannot take rank 0's state
    with pytest.warns(UserWarning, match='cannot resume rank 1 of 1'):
        noise.load_state_dict({'_extra_state': state})
    first = noise.sample((8, ), 'cpu', torch.float32)
    again = DiffusionNoise('fresh', 3, rank=1).train()
    with pytest.warns(UserWarning):
        again.load_state_dict({'_extra_state': {'generator_state': state}})
    assert torch.equal(again.sample((8, ), 'cpu', torch.float32), first)   # deterministic


def test_stream_state_is_a_draw_count():
    noise = DiffusionNoise('fresh', 3).train()
    draws = [noise.sample((8, ), 'cpu', torch.float32) for _ in range(5)]
    state = noise.state_dict()['_extra_state']
    assert state.tolist() == [1, 5, 1]
    resumed = DiffusionNoise('fresh', 3).train()
    resumed.load_state_dict({'_extra_state': torch.tensor([1, 3, 1])})
    assert torch.equal(resumed.sample((8, ), 'cpu', torch.float32), draws[3])
    with pytest.warns(UserWarning, match='written by 2 rank'):   # another world size
        resumed.load_state_dict({'_extra_state': torch.tensor([1, 4, 2])})
    assert torch.equal(resumed.sample((8, ), 'cpu', torch.float32), draws[4])
    with pytest.raises(ValueError, match='unknown random-stream state'):
        resumed.load_state_dict({'_extra_state': torch.tensor([7, 4, 2])})


def test_timestep_sampler_reads_the_rank_at_each_draw(monkeypatch):
    import mmdiffssl.models.noise as noise_module
    sampler = TimestepSampler(1000, seed=4)   # built "before the process group"
    t0, _ = sampler.sample(16, 'cpu')
    monkeypatch.setattr(noise_module, '_rank_and_world', lambda hint=None: (1, 2))
    t1, _ = sampler.sample(16, 'cpu')
    uniform = torch.full((1000, ), 1e-3, dtype=torch.float64)
    for t, rank, draw in ((t0, 0, 0), (t1, 1, 1)):
        gen = torch.Generator().manual_seed(noise_module.draw_seed(4, rank, draw))
        assert torch.equal(t, torch.multinomial(uniform, 16, replacement=True, generator=gen))
