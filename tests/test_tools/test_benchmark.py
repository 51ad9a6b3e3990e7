"""tools/benchmark.py, its drivers (tools/benchmarks) and FLOP counting on CPU, with narrowed
ADM archs."""
import importlib.util
import json
import os.path as osp

import pytest
import torch

from benchmarks import BenchmarkConfig, run_benchmark
from conftest import ROOT, run_tool

from mmdiffssl.benchmark import adm_flops, count_flops
from mmdiffssl.models.unets import build_adm_unet

TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult='1,2,2',
            attention_resolutions='16,8', num_head_channels=16, learn_sigma=False)



@pytest.fixture(autouse=True)
def _one_thread():
    """The models are tiny and the CPU is shared: extra threads only cost synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

def check_side(side, batch):
    assert side['img_per_s'] > 0 and side['latency_ms'] > 0 and side['tflops'] > 0
    assert side['iters'] >= 1 and side['first_call_s'] > 0
    assert side['peak_mem_gib'] is None  # CPU
    # counted on the device at this batch == counted on the meta device at batch 1 x batch
    # (to 1e-4: guided-diffusion's einsum on 1x1 maps is no matrix product and not counted)
    assert side['gflop_per_image'] == pytest.approx(side['meta_gflop_per_image'], rel=1e-4)
    assert side['flops_per_batch'] == pytest.approx(
        side['meta_gflop_per_image'] * 1e9 * batch, rel=1e-4)
    assert any('attention' in op or 'bmm' in op for op in side['flops_by_op'])


def test_tool_block24_smoke(tmp_path):
    out = osp.join(str(tmp_path), 'bench.json')
    stdout = run_tool(['tools/benchmark.py', '--arch', 'adm-256-uncond', '--channels', '32',
                       '--size', '32', '--batch', '2', '--iters', '2', '--warmup', '0',
                       '--dtype', 'fp32', '--check-images', '1', '--threads', '1',
                       '--out', out], timeout=300, fresh_process=True)
    assert 'ours/ref' in stdout and 'reference' in stdout
    with open(out) as f:
        result = json.load(f)
    cfg = result['config']
    assert cfg['blocks'] == [24] and cfg['timesteps'] == [150] and cfg['device'] == 'cpu'
    assert cfg['flags']['num_channels'] == 32 and cfg['flags']['num_head_channels'] == 8
    assert cfg['command'].startswith('python tools/benchmark.py --arch adm-256-uncond')
    assert result['reference']['dtype'] == 'fp32'  # guided-diffusion's fp16 is for GPUs
    for name in ('ours', 'reference'):
        check_side(result[name], batch=2)
    ours, ref = result['ours'], result['reference']
    assert ours['forwards_per_batch'] == 1 and ref['forwards_per_batch'] == 1
    # stopping after block 24 skips most of the decoder: 320 of 1120 GMACs for the paper's
    # model at 256 px, the same share for the narrowed one at 32 px
    narrow = dict(preset='adm-256-uncond', num_channels=32, num_head_channels=8)
    assert ours['flops_per_batch'] / ref['flops_per_batch'] == pytest.approx(
        adm_flops(narrow, 32, (24, )) / adm_flops(narrow, 32), rel=1e-3)
    assert ours['flops_per_batch'] / ref['flops_per_batch'] == pytest.approx(320 / 1120, abs=0.01)
    assert result['ratio']['flops'] == pytest.approx(
        ours['flops_per_batch'] / ref['flops_per_batch'])
    assert result['ratio']['img_per_s'] > 0 and result['ratio']['peak_mem'] is None
    agreement = result['agreement']
    assert agreement['ours_fp32_vs_reference_fp32']['24']['min'] > 0.99999
    assert agreement['ours_vs_ours_fp32']['24']['min'] > 0.99999


def test_difformer_setting_bf16_in_process():
    """Blocks 19, 24, 30 x t 90, 150, 300: one batched forward vs three full forwards."""
    cfg = BenchmarkConfig(arch='adm-256-uncond', channels=32, size=32, batch=1, iters=1,
                          warmup=0, dtype='bf16', blocks=(19, 24, 30),
                          timesteps=(90, 150, 300), check_images=1, device='cpu', threads=1)
    result = run_benchmark(cfg, log=lambda *a: None)
    ours, ref = result['ours'], result['reference']
    for side in (ours, ref):
        check_side(side, batch=1)
    assert ours['forwards_per_batch'] == 1 and ours['images_per_forward'] == 3
    assert ref['forwards_per_batch'] == 3
    assert ours['flops_per_batch'] == pytest.approx(3 * adm_flops(
        dict(preset='adm-256-uncond', num_channels=32, num_head_channels=8), 32, (30, )))
    assert ours['flops_per_batch'] < ref['flops_per_batch']
    for key in ('ours_vs_ours_fp32', 'ours_fp32_vs_reference_fp32', 'ours_vs_reference_as_run'):
        assert sorted(result['agreement'][key]) == ['19', '24', '30']
    for block in ('19', '24', '30'):
        assert result['agreement']['ours_fp32_vs_reference_fp32'][block]['min'] > 0.99999
        assert result['agreement']['ours_vs_ours_fp32'][block]['min'] > 0.999
        assert set(result['agreement']['ours_vs_ours_fp32'][block]['per_t']) == {
            '90', '150', '300'}


def test_flops_of_the_paper_model_match_the_published_counts():
    """adm-256-uncond at 256 px: about 1120 GMACs per image, about 320 through block 24
    (FACTS.md), counted on the meta device for ours and for guided-diffusion's UNetModel."""
    full = adm_flops('adm-256-uncond')
    block24 = adm_flops('adm-256-uncond', blocks=(24, ))
    assert full / 2e9 == pytest.approx(1120, rel=0.01)
    assert block24 / 2e9 == pytest.approx(320, rel=0.01)
    assert adm_flops('adm-256-uncond', blocks=(37, )) < full  # all but the output conv

    from benchmarks.reference import GuidedDiffusionReference
    from benchmarks.speed import resolve_flags
    flags = resolve_flags('adm-256-uncond')
    from mmdiffssl.models.backbones import ADMBackbone
    from mmdiffssl.models.backbones.base import shapes_only
    with shapes_only():
        table = ADMBackbone(arch=flags, blocks=(24, )).block_table
    with torch.device('meta'):
        ref = GuidedDiffusionReference(flags, (24, ), table)
        x, t = torch.zeros(1, 3, 256, 256), torch.zeros(1, dtype=torch.long)
    _, ref_flops, _ = count_flops(ref.model, x, t)
    assert ref_flops == pytest.approx(full, rel=1e-6)


def test_flops_scale_with_batch_and_cpu_attention_is_counted():
    assert adm_flops(TINY, batch=3) == 3 * adm_flops(TINY, batch=1)
    unet = build_adm_unet(TINY).eval()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([5, 500])
    with torch.no_grad():
        _, flops, per_op = count_flops(unet, x, t)  # on CPU: fused SDPA kernel
    assert flops == adm_flops(TINY, batch=2)  # on meta: SDPA decomposes into bmm
    assert '_scaled_dot_product_flash_attention_for_cpu' in ''.join(per_op)


def test_cli_arguments():
    spec = importlib.util.spec_from_file_location('benchmark_tool',
                                                  osp.join(ROOT, 'tools', 'benchmark.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    parse_args = tool.parse_args
    args = parse_args(['--blocks', '19,24,30', '--timesteps', '90,150,300', '--compile'])
    assert args.blocks == (19, 24, 30) and args.timesteps == (90, 150, 300) and args.compile
    assert parse_args(['--blocks', 'all']).blocks == 'all'
    assert parse_args([]).batch == 64 and parse_args([]).dtype == 'bf16'
