"""tools/print_blocks.py and tools/extract_features.py."""
import json
import os.path as osp
import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, run_tool
from mmdiffssl.apis import build_backbone, extract_features
from mmdiffssl.apis.extraction import load_image

TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult='1,2,2',
            attention_resolutions='16,8', num_head_channels=16, learn_sigma=False)


def test_print_blocks_paper_table():
    out = run_tool([osp.join(ROOT, 'tools/print_blocks.py'), 'adm-256-uncond'],
                   fresh_process=True)   # the command line itself, once per tool
    rows = [line.split() for line in out.splitlines() if re.match(r'\s+\d+\s', line)]
    assert [r[0] for r in rows] == [str(i) for i in range(1, 38)]
    assert rows[23][:7] == ['24', 'output', '1024', '16', '16x16', 'output_blocks.4', 'no']
    assert rows[18][:2] == ['19', 'middle']
    assert '552,814,086 network parameters' in out
    # a frozen run stopping at block 24 keeps 415,471,616 parameters (fp32)
    assert rows[23][-2] == f'{415_471_616 * 4 / 2**20:.1f}'


def test_print_blocks_stable_diffusion_table():
    pytest.importorskip('diffusers')
    out = run_tool([osp.join(ROOT, 'tools/print_blocks.py'), 'sd-1.x'])
    rows = [line.split() for line in out.splitlines() if re.match(r'\s+\d+\s', line)]
    assert [r[0] for r in rows] == [str(i) for i in range(1, 10)]
    assert rows[6][:7] == ['7', 'output', '1280', '32', '16x16', 'up_blocks.1', 'yes']
    assert rows[4][:2] == ['5', 'middle']


@pytest.mark.parametrize('fmt', ['npy', 'safetensors'])
def test_extract_features_folder(tmp_path, fmt):
    folder = tmp_path / 'images' / 'sub'
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)).save(
            folder / f'{i}.png')
    ckpt = str(tmp_path / 'unet.pt')
    torch.save(build_backbone(TINY, blocks=(9, ), random_init='redraw', prune=False)
               .unet.state_dict(), ckpt)
    out = tmp_path / 'out'
    run_tool([osp.join(ROOT, 'tools/extract_features.py'), str(tmp_path / 'images'), str(out),
              '--arch', json.dumps(TINY), '--blocks', '9', '4', '--timesteps', '100',
              '--size', '32', '--batch-size', '2', '--format', fmt, '--checkpoint', ckpt],
             fresh_process=fmt == 'npy')   # the command line itself, once per tool
    if fmt == 'npy':
        feats = {b: torch.from_numpy(np.load(out / f'block{b}.npy')) for b in (9, 4)}
    else:
        from safetensors.torch import load_file
        loaded = load_file(str(out / 'features.safetensors'))
        feats = {b: loaded[f'block{b}'] for b in (9, 4)}
    assert feats[9].shape == (3, 64, 16, 16) and feats[4].shape == (3, 64, 16, 16)
    assert feats[9].dtype == torch.float16
    paths = (out / 'images.txt').read_text().split()
    assert [osp.basename(p) for p in paths] == ['0.png', '1.png', '2.png']
    # Row 2 was computed in the second batch with key 2: recompute it alone.
    bb = build_backbone(TINY, blocks=(9, 4), timesteps=(100, ), checkpoint=ckpt)
    direct = extract_features(bb, load_image(paths[2], 32)[None], keys=torch.tensor([2]))
    torch.testing.assert_close(feats[9][2].float(), direct[9][0], rtol=2e-3, atol=2e-3)


def test_extract_features_missing_folder(tmp_path):
    with pytest.raises(AssertionError, match='image folder not found'):
        run_tool([osp.join(ROOT, 'tools/extract_features.py'), str(tmp_path / 'nope'),
                  str(tmp_path / 'out'), '--arch', json.dumps(TINY), '--blocks', '9'])
