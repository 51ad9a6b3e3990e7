"""The Mask R-CNN and UPerNet configs: real widths agree, and each builds and runs shrunk.

For every config under configs/mask_rcnn and configs/upernet:
- the model built on the meta device (full adm-256-uncond, no weights) has the neck's /
  heads' in_channels of the U-Net's blocks and padding of its total downsampling, derived
  by DiffMaskRCNN / DiffEncoderDecoder from the backbone (the configs give none of them),
  and the documented switches (frozen / fine-tuned with lr_mult 0.1 and with_cp / AMP
  dtypes) are as named;
- the model builds in its scope with the U-Net shrunk to :data:`TINY_ARCH` (the same blocks
  by stride; the widths follow by themselves), and the backbone + neck (mmdet) or backbone +
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
import mmdiffssl.models.detectors  # noqa: F401  (until mmdiffssl.models imports them)
import mmdiffssl.models.segmentors  # noqa: F401
from mmdiffssl.models.backbones.base import shapes_only

CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'mask_rcnn', '*.py'))
                 + glob.glob(osp.join(ROOT, 'configs', 'upernet', '*.py')))
NAME = re.compile(r'^(mask-rcnn|upernet)_adm-256-uncond-(pyramid|b24)-(frozen|ft-cp(-lrd)?)'
                  r'(_(fpn|simple-fpn))?_8xb2-(amp-(bf16|fp16)-)?(1x|3x|80k|160k)_'
                  r'(coco|ade20k-512x512)\.py$')


pytestmark = pytest.mark.usefixtures('one_thread')


def meta_build(cfg):
    with shapes_only():
        return MODELS.build(cfg)


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
    built = meta_build(copy.deepcopy(model))      # full widths, no weights read
    channels, strides = built.backbone.out_channels, built.backbone.out_strides
    total_down = built.backbone.size_divisibility     # 2 ** (levels - 1)
    pre = model.data_preprocessor
    assert pre.mean == [127.5] * 3 and pre.std == [127.5] * 3 and pre.bgr_to_rgb
    if scope == 'mmdet':
        assert model.type == 'DiffMaskRCNN' and pre.pad_size_divisor is None
        assert built.data_preprocessor.pad_size_divisor == total_down == 32
        assert model.neck.get('in_channels') is None
        if model.neck.type == 'FPN':
            assert bb.blocks == 'pyramid' and strides == [4, 8, 16, 32]
            assert built.neck.in_channels == channels == [512, 512, 1024, 1024]
        else:
            assert model.neck.type == 'DiffSimpleFPN' and strides == [16]
            assert built.neck.in_channels == channels[0] == 1024
        assert model.neck.num_outs == 5
        assert model.rpn_head.anchor_generator.strides == [4, 8, 16, 32, 64]
    else:
        assert model.type == 'DiffEncoderDecoder' and model.pretrained is None
        assert pre.get('test_cfg') is None
        assert built.data_preprocessor.test_cfg == dict(size_divisor=total_down)
        assert total_down == 32 and strides == [4, 8, 16, 32]
        assert model.decode_head.in_channels is None and model.auxiliary_head.in_channels is None
        assert built.decode_head.in_channels == channels == [512, 512, 1024, 1024]
        aux = built.auxiliary_head
        assert aux.in_index == 2 and strides[2] == 16 and aux.in_channels == channels[2]
    fine_tuned = '-ft-' in name
    assert bb.frozen is not fine_tuned
    assert bb.with_cp is fine_tuned
    assert not cfg.get('find_unused_parameters', False)   # see test_dense_ddp.py
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
    """The config's model on the tiny U-Net: the neck's and heads' in_channels follow from
    it (DiffMaskRCNN, DiffEncoderDecoder)."""
    model = copy.deepcopy(cfg.model)
    bb = model.backbone
    strides = meta_build(copy.deepcopy(bb)).out_strides
    bb.arch = dict(TINY_ARCH)
    bb.checkpoint = None
    bb.random_init = 'redraw'
    if bb.blocks != 'pyramid':   # the tiny U-Net's last decoder block at the same stride
        bb.blocks = list(meta_build(dict(bb, blocks='pyramid')).block_table.pyramid(strides))
    if scope == 'mmdet':
        model.data_preprocessor.batch_augments = None    # no 1024 x 1024 padding here
    else:
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
