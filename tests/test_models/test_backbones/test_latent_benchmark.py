"""tools/benchmark.py --backbone sd|sdxl|dit|pixart and tools/benchmarks/latent.py on CPU with
the tiny models of the backbone tests: ours (stopped at the deepest block, pruned) against
the diffusers model's full forward, features equal to the hooked reference in fp32."""
import importlib.util
import json
import os.path as osp

import pytest
import torch

pytest.importorskip('diffusers')

from benchmarks import FAMILIES, LatentBenchmarkConfig, run_latent_benchmark  # noqa: E402
from conftest import ROOT  # noqa: E402
from helpers.sd_tiny import TINY_UNET, TINY_VAE  # noqa: E402
from helpers.sdxl_tiny import TINY_SDXL_UNET  # noqa: E402
from helpers.transformer_tiny import TINY_DIT, TINY_PIXART, write_text_file  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')

TINY = {
    'sd': dict(unet=TINY_UNET, vae=TINY_VAE),
    'sdxl': dict(unet=TINY_SDXL_UNET, vae=dict(TINY_VAE, scaling_factor=0.13025)),
    'dit': dict(transformer=TINY_DIT, vae=TINY_VAE),
    'pixart': dict(transformer=TINY_PIXART, vae=TINY_VAE),
}


def load_tool():
    spec = importlib.util.spec_from_file_location('benchmark_tool',
                                                  osp.join(ROOT, 'tools', 'benchmark.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def tiny_run(family, **kwargs):
    cfg = LatentBenchmarkConfig(family=family, arch=TINY[family], batch=1, iters=1, warmup=0,
                                dtype='fp32', device='cpu', threads=1, check_images=1,
                                **kwargs)
    return run_latent_benchmark(cfg, log=lambda *a: None)


def assert_agrees(result, blocks):
    agreement = result['agreement']['ours_fp32_vs_reference_fp32']
    assert sorted(agreement) == sorted(str(b) for b in blocks)
    for block in agreement:
        assert agreement[block]['min'] > 0.99999, (block, agreement[block])


def test_tool_sd_pyramid_two_timesteps(tmp_path, capsys):
    out = str(tmp_path / 'sd.json')
    load_tool().main(['--backbone', 'sd', '--arch', json.dumps(TINY['sd']), '--size', '64',
                      '--batch', '2', '--iters', '1', '--warmup', '0', '--dtype', 'fp32',
                      '--threads', '1', '--timesteps', '100,300', '--check-images', '1',
                      '--out', out])
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
    assert_agrees(result, (9, 8, 7, 6))


def test_stopping_early_counts_fewer_flops():
    result = tiny_run('sd', blocks=(3, ), size=64)
    assert result['ratio']['flops'] < 0.7
    assert_agrees(result, (3, ))


def test_sdxl_pyramid_with_time_ids(tmp_path):
    # the default blocks, size and a random pooled + context embedding of the arch's widths
    result = tiny_run('sdxl', timesteps=(100, 300))
    cfg = result['config']
    assert cfg['size'] == 64 and cfg['blocks'] == [7, 6, 5]
    assert cfg['out_strides'] == [8, 16, 32]
    assert_agrees(result, (7, 6, 5))
    assert result['reference']['forwards_per_batch'] == 2


@pytest.mark.parametrize('family', ['dit', 'pixart'])
def test_transformer_stopped_early_agrees_and_saves_flops(family):
    # block 1 of 4: ours runs one transformer block, the reference all four and the output
    # layer (the tiny VAE encoder is most of both sides' FLOPs)
    first = tiny_run(family, blocks=(1, ), size=64)
    assert first['config']['out_strides'] == [16] and first['config']['blocks'] == [1]
    assert_agrees(first, (1, ))
    last = tiny_run(family, blocks=(4, ), size=64)
    assert_agrees(last, (4, ))
    ours_first, ours_last = (r['ours']['flops_per_batch'] for r in (first, last))
    ref = first['reference']['flops_per_batch']
    assert ref == last['reference']['flops_per_batch']
    # the saving of stopping at block 1 is three blocks' work, far more than the output layer
    assert ours_first < ours_last < ref
    assert ref - ours_last < (ref - ours_first) / 3


def test_tool_dit_class_label_and_pixart_text_file(tmp_path):
    tool = load_tool()
    out = str(tmp_path / 'dit.json')
    args = ['--size', '64', '--batch', '1', '--iters', '1', '--warmup', '0', '--dtype', 'fp32',
            '--threads', '1', '--check-images', '1', '--blocks', '2,4']
    tool.main(['--backbone', 'dit', '--arch', json.dumps(TINY['dit']), '--class-label', '3',
               '--out', out] + args)
    with open(out) as f:
        result = json.load(f)
    assert result['config']['class_label'] == 3
    assert 'DiTTransformer2DModel' in result['notes'][-1]
    assert_agrees(result, (2, 4))
    text = str(tmp_path / 'text.pt')
    write_text_file(text)   # a padding mask: the reference must apply it as ours does
    tool.main(['--backbone', 'pixart', '--arch', json.dumps(TINY['pixart']), '--text', text,
               '--out', out] + args)
    with open(out) as f:
        result = json.load(f)
    assert result['config']['text'] == text
    assert_agrees(result, (2, 4))


def test_cli_defaults_and_wrong_flags():
    tool = load_tool()
    args = tool.parse_args(['--backbone', 'dit'])
    assert args.backbone == 'dit' and args.blocks is None and args.timesteps is None
    assert set(FAMILIES) == {'sd', 'sdxl', 'dit', 'pixart'}
    with pytest.raises(SystemExit, match='--compile is not used with --backbone sd'):
        tool.main(['--backbone', 'sd', '--compile'])
    with pytest.raises(SystemExit, match='--pretrained is not used with --backbone adm'):
        tool.main(['--pretrained', 'x'])
    with pytest.raises(SystemExit, match=r'--stride4 is not used with --backbone dit \(only '
                       r'with sd, sdxl\)'):
        tool.main(['--backbone', 'dit', '--stride4', 'vae'])
    with pytest.raises(SystemExit, match='--text is not used with --backbone dit'):
        tool.main(['--backbone', 'dit', '--text', 'x.pt'])
    with pytest.raises(SystemExit, match="arch 'dit-xl-2' is not one of .*'dit-xl-2-256'"):
        tool.main(['--backbone', 'dit', '--arch', 'dit-xl-2'])
    assert torch.get_num_threads() >= 1
