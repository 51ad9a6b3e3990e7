"""tools/benchmark.py --backbone sd and tools/benchmarks/sd.py on CPU with the tiny SD arch."""
import importlib.util
import json
import os.path as osp

import pytest
import torch

pytest.importorskip('diffusers')

from benchmarks import SDBenchmarkConfig, run_sd_benchmark  # noqa: E402
from conftest import ROOT  # noqa: E402
from helpers.sd_tiny import TINY_UNET, TINY_VAE  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')


def load_tool():
    spec = importlib.util.spec_from_file_location('benchmark_tool',
                                                  osp.join(ROOT, 'tools', 'benchmark.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_tool_sd_pyramid_two_timesteps(tmp_path, capsys):
    out = str(tmp_path / 'sd.json')
    arch = json.dumps(dict(unet=TINY_UNET, vae=TINY_VAE))
    load_tool().main(['--backbone', 'sd', '--arch', arch, '--size', '64', '--batch', '2',
                      '--iters', '1', '--warmup', '0', '--dtype', 'fp32', '--threads', '1',
                      '--timesteps', '100,300', '--check-images', '1', '--out', out])
    assert 'ours/ref' in capsys.readouterr().out
    with open(out) as f:
        result = json.load(f)
    cfg, ours, ref = result['config'], result['ours'], result['reference']
    assert cfg['blocks'] == [9, 8, 7, 6] and cfg['timesteps'] == [100, 300]
    assert cfg['out_strides'] == [8, 16, 32, 64] and cfg['command'].startswith(
        'python tools/benchmark.py --backbone sd')
    assert ours['forwards_per_batch'] == 1 and ref['forwards_per_batch'] == 2
    assert ours['images_per_forward'] == 4 and ref['dtype'] == 'fp32'
    # up_blocks.3 is the last block: both sides do the same work but conv_norm_out/conv_out
    assert 0.98 < result['ratio']['flops'] < 1.0
    for block in ('9', '8', '7', '6'):
        assert result['agreement']['ours_fp32_vs_reference_fp32'][block]['min'] > 0.99999


def test_stopping_early_counts_fewer_flops():
    cfg = SDBenchmarkConfig(arch=dict(unet=TINY_UNET, vae=TINY_VAE), blocks=(3, ), size=64,
                            batch=1, iters=1, warmup=0, dtype='fp32', device='cpu',
                            threads=1, check_images=1)
    result = run_sd_benchmark(cfg, log=lambda *a: None)
    assert result['ratio']['flops'] < 0.7
    assert result['agreement']['ours_fp32_vs_reference_fp32']['3']['min'] > 0.99999


def test_cli_defaults_per_backbone():
    tool = load_tool()
    args = tool.parse_args(['--backbone', 'sd'])
    assert args.backbone == 'sd' and args.blocks is None and args.timesteps is None
    with pytest.raises(SystemExit, match='--compile'):
        tool.main(['--backbone', 'sd', '--compile'])
    with pytest.raises(SystemExit, match='--backbone sd'):
        tool.main(['--pretrained', 'x'])
    assert torch.get_num_threads() >= 1
