"""The DiT / PixArt dense configs (single block + DiffSimpleFPN) and the SDXL pyramid train
a few CPU iterations through tools/train.py on tiny random models in diffusers' layout.

Each real config (configs/dit, configs/pixart, configs/sdxl) is inherited by a small config
written next to the tiny data (tests/test_dense/dense_data.py) with ``pretrained`` pointing
at a tiny folder (the transformers' block 2 of 4 for the real block 14 of 28); the neck's input widths and the padding follow the tiny backbone by
themselves. The run must end with a checkpoint holding the trained neck and heads and none
of the frozen network's weights (reloaded from the folder)."""
import os.path as osp

import pytest
import torch

from conftest import ROOT, run_tool
from dense_data import make_ade_shapes, make_coco_shapes, tiny_mask_rcnn_cfg, tiny_upernet_cfg

pytest.importorskip('diffusers')
pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
pytest.importorskip('mmcv.ops')

ENV = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
ITERS = 2
NECK = 16                       # tiny simple-pyramid width


def folder_of(family, root):
    from helpers.sdxl_tiny import write_tiny_sdxl
    from helpers.transformer_tiny import write_text_file, write_tiny_dit, write_tiny_pixart
    folder = osp.join(root, family)
    if family == 'dit':
        write_tiny_dit(folder)
        return f'dict(pretrained={folder!r}, blocks=(2, ))', 'transformer.'
    if family == 'pixart':
        write_tiny_pixart(folder)
        text = osp.join(root, 'null_t5.pt')
        write_text_file(text, kept=1)
        return (f"dict(pretrained={folder!r}, blocks=(2, ), "
                f"text=dict(type='file', path={text!r}))",
                'transformer.')
    write_tiny_sdxl(folder)
    return f'dict(pretrained={folder!r})', 'unet.'


# PixArt's dense configs share DiT's bases and path (about 40 s each): slow suite
CASES = [
    pytest.param('dit', 'mask_rcnn',
                 'dit/mask-rcnn_dit-xl-2-256-b14-frozen_simple-fpn_8xb2-1x_coco.py',
                 id='dit-mask_rcnn'),
    pytest.param('dit', 'upernet',
                 'dit/upernet_dit-xl-2-256-b14-frozen_simple-fpn_8xb2-80k_ade20k-512x512.py',
                 id='dit-upernet'),
    pytest.param('pixart', 'mask_rcnn',
                 'pixart/mask-rcnn_pixart-alpha-xl-2-512-b14-frozen_simple-fpn_8xb2-1x_coco.py',
                 id='pixart-mask_rcnn', marks=pytest.mark.slow),
    pytest.param('pixart', 'upernet', 'pixart/upernet_pixart-alpha-xl-2-512-b14-frozen_'
                 'simple-fpn_8xb2-80k_ade20k-512x512.py', id='pixart-upernet',
                 marks=pytest.mark.slow),
    pytest.param('sdxl', 'mask_rcnn', 'sdxl/mask-rcnn_sdxl-base-pyramid-frozen_fpn_8xb2-1x_coco.py',
                 id='sdxl-mask_rcnn'),
]


@pytest.mark.parametrize('family,task,config', CASES)
def test_dense_config_trains_through_tools(family, task, config, tmp_path):
    root = str(tmp_path / 'data')
    backbone, network = folder_of(family, str(tmp_path))
    base = osp.join(ROOT, 'configs', config)
    work = str(tmp_path / 'work')
    if task == 'mask_rcnn':
        make_coco_shapes(root)
        cfg = tiny_mask_rcnn_cfg(root, ITERS, base=base, backbone=backbone, neck='')
        checkpoint = osp.join(work, f'epoch_{ITERS}.pth')
    else:
        root = make_ade_shapes(root)
        cfg = tiny_upernet_cfg(root, ITERS, base=base, backbone=backbone,
                               in_channels=[NECK] * 4, neck=f'\n    neck=dict(out_channels={NECK}),')
        checkpoint = osp.join(work, f'iter_{ITERS}.pth')
    log = run_tool(['tools/train.py', cfg, '--work-dir', work], env=ENV)
    assert 'loss' in log and osp.isfile(checkpoint)
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']
    assert any(k.startswith('neck.') for k in state)
    assert not any(k.startswith(f'backbone.{network}') or k.startswith('backbone.vae.')
                   for k in state)
