"""The Mask R-CNN and UPerNet configs: real widths agree, and each builds and runs shrunk.

For every config under configs/mask_rcnn and configs/upernet:
- the neck's / heads' in_channels equal the full adm-256-uncond blocks' channels (U-Net built
  on the meta device), padding equals the U-Net's total downsampling, and the documented
  switches (frozen / fine-tuned with lr_mult 0.1 and with_cp / AMP dtypes) are as named;
- the model builds in its scope with the U-Net shrunk to :data:`TINY_ARCH` (the same blocks
  by stride) and the widths rewired to it, and the backbone + neck (mmdet) or backbone +
  heads (mmseg) run on a 64 x 64 batch.
"""
import copy
import glob
import importlib
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from dense_data import ROOT, TINY_ARCH
from mmdiffssl.models.backbones.adm_backbone import pyramid_blocks
from mmdiffssl.models.unets import adm_flags_from, build_adm_unet

CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'mask_rcnn', '*.py'))
                 + glob.glob(osp.join(ROOT, 'configs', 'upernet', '*.py')))
NAME = re.compile(r'^(mask-rcnn|upernet)_adm-256-uncond-(pyramid|b24)-(frozen|ft-cp(-lrd)?)'
                  r'(_(fpn|simple-fpn))?_8xb2-(amp-(bf16|fp16)-)?(1x|3x|80k|160k)_'
                  r'(coco|ade20k-512x512)\.py$')


pytestmark = pytest.mark.usefixtures('one_thread')


def specs_of(arch):
    with torch.device('meta'):
        return {s.index: s for s in build_adm_unet(adm_flags_from(arch)).block_specs()}


FULL = specs_of('adm-256-uncond')
TINY = specs_of(TINY_ARCH)


def blocks_of(backbone, specs):
    if backbone.blocks == 'pyramid':
        return list(pyramid_blocks(list(specs.values())))
    return list(backbone.blocks)


def load(path):
    cfg = Config.fromfile(path)
    scope = cfg.default_scope
    pytest.importorskip(scope)
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    init_default_scope(scope)
    return cfg, scope


def test_all_configs_found_and_named():
    names = [osp.basename(p) for p in CONFIGS]
    assert len([n for n in names if n.startswith('mask-rcnn')]) >= 8
    assert len([n for n in names if n.startswith('upernet')]) >= 4
    for name in names:
        assert NAME.match(name), name


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_real_widths_and_switches(path):
    cfg, scope = load(path)
    model, bb = cfg.model, cfg.model.backbone
    name = osp.basename(path)
    assert bb.type == 'ADMBackbone' and bb.arch == 'adm-256-uncond'
    assert bb.checkpoint == 'checkpoints/256x256_diffusion_uncond.pt'
    assert tuple(bb.timesteps) == (100, )
    assert 'mmdiffssl' in cfg.custom_imports.imports
    channels = [FULL[b].channels for b in blocks_of(bb, FULL)]
    strides = [FULL[b].stride for b in blocks_of(bb, FULL)]
    total_down = max(s.stride for s in FULL.values())     # 2 ** (levels - 1)
    pre = model.data_preprocessor
    assert pre.mean == [127.5] * 3 and pre.std == [127.5] * 3 and pre.bgr_to_rgb
    if scope == 'mmdet':
        assert pre.pad_size_divisor == total_down == 32
        if model.neck.type == 'FPN':
            assert bb.blocks == 'pyramid' and strides == [4, 8, 16, 32]
            assert model.neck.in_channels == channels
        else:
            assert model.neck.type == 'DiffSimpleFPN' and strides == [16]
            assert model.neck.in_channels == channels[0]
        assert model.neck.num_outs == 5
        assert model.rpn_head.anchor_generator.strides == [4, 8, 16, 32, 64]
    else:
        assert model.pretrained is None
        assert pre.test_cfg.size_divisor == total_down
        assert strides == [4, 8, 16, 32]
        assert model.decode_head.in_channels == channels
        aux = model.auxiliary_head
        assert aux.in_index == 2 and strides[2] == 16 and aux.in_channels == channels[2]
    fine_tuned = '-ft-' in name
    assert bb.frozen is not fine_tuned
    assert bb.with_cp is fine_tuned
    assert cfg.get('find_unused_parameters', False) is fine_tuned   # see test_upernet_tools
    keys = cfg.optim_wrapper.get('paramwise_cfg', {}).get('custom_keys', {})
    assert (keys.get('backbone') == dict(lr_mult=0.1)) is fine_tuned
    amp = re.search(r'amp-(bf16|fp16)', name)
    if amp:
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.dtype == {'bf16': 'bfloat16', 'fp16': 'float16'}[amp[1]]
        assert bb.dtype == amp[1]
    else:
        assert cfg.optim_wrapper.type == 'OptimWrapper' and bb.dtype == 'fp32'
    if '-lrd' in name:
        assert cfg.optim_wrapper.constructor == 'LayerDecayOptimWrapperConstructor'
        assert 'mmdiffssl.engine' in cfg.custom_imports.imports
    schedule = re.search(r'-(1x|3x|80k|160k)_', name)[1]
    length = cfg.train_cfg.get('max_epochs') or cfg.train_cfg.get('max_iters')
    assert length == {'1x': 12, '3x': 36, '80k': 80000, '160k': 160000}[schedule]


def shrunk_model_cfg(cfg, scope):
    model = copy.deepcopy(cfg.model)
    bb = model.backbone
    strides = [FULL[b].stride for b in blocks_of(bb, FULL)]
    bb.arch = dict(TINY_ARCH)
    bb.checkpoint = None
    bb.random_init = 'redraw'
    if bb.blocks != 'pyramid':   # the tiny U-Net's last decoder block at the same stride
        bb.blocks = list(pyramid_blocks(list(TINY.values()), strides))
    channels = [TINY[b].channels for b in blocks_of(bb, TINY)]
    if scope == 'mmdet':
        model.data_preprocessor.batch_augments = None    # no 1024 x 1024 padding here
        model.neck.in_channels = channels if model.neck.type == 'FPN' else channels[0]
    else:
        model.decode_head.in_channels = channels
        model.auxiliary_head.in_channels = channels[model.auxiliary_head.in_index]
        model.decode_head.norm_cfg = model.auxiliary_head.norm_cfg = dict(type='BN')
    return model


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_builds_and_runs_with_a_small_unet(path):
    cfg, scope = load(path)
    model = MODELS.build(shrunk_model_cfg(cfg, scope))
    model.init_weights()
    bb = model.backbone
    assert bb.frozen is cfg.model.backbone.frozen and bb.with_cp is cfg.model.backbone.with_cp
    if bb.frozen:
        assert not any(p.requires_grad for p in bb.parameters())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    model.train()
    if scope == 'mmdet':
        feats = model.extract_feat(x)
        assert [tuple(f.shape[-2:]) for f in feats] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
        assert all(f.shape[1] == cfg.model.neck.out_channels for f in feats)
        loss = sum(f.float().mean() for f in feats)
    else:
        feats = model.extract_feat(x)
        assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]
        seg = model.decode_head(feats)
        aux = model.auxiliary_head(feats)
        assert seg.shape == (2, 150, 16, 16) and aux.shape == (2, 150, 4, 4)
        loss = seg.float().mean() + aux.float().mean()
    loss.backward()
    unet_grads = [p.grad for p in bb.unet.parameters() if p.requires_grad]
    assert (len(unet_grads) > 0) is (not bb.frozen)
    if not bb.frozen:
        assert any(g is not None and g.abs().sum() > 0 for g in unet_grads)
