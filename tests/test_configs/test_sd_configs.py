"""The Stable Diffusion configs (configs/sd): names, real widths, and one training step each.

- Real widths: the model with the SD 1.x U-Net and VAE (published configs, ``SD_ARCHS``) is
  built on the meta device; the neck's and heads' ``in_channels`` (which the configs leave
  out) are the backbone's ``out_channels``, padding its total downsampling (64); the
  fine-tuning switches.
- Training step: ``pretrained`` points at a tiny random SD folder written by
  tests/helpers/sd_tiny.py (loaded offline like a real one), neck/head input widths follow
  its ``out_channels`` by themselves, and ``model.train_step`` runs once on generated 64 x 64
  data through the config's own optimizer wrapper (with its lr multiplier). Heads change; a frozen U-Net does
  not, a fine-tuned one does.
"""
import copy
import glob
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS

from conftest import ROOT
from test_configs_build import load

pytest.importorskip('diffusers')
pytest.importorskip('transformers')

from helpers.sd_tiny import tiny_sd  # noqa: E402,F401 (fixture)
import mmdiffssl.models.detectors  # noqa: E402,F401  (until mmdiffssl.models imports them)
import mmdiffssl.models.segmentors  # noqa: E402,F401
from mmdiffssl.models.backbones.base import shapes_only  # noqa: E402
from mmdiffssl.models.unets.diffusers_blocks import SD_ARCHS  # noqa: E402

CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'sd', '*.py')))

NAME = re.compile(r'^((mask-rcnn|upernet)_sd-1-5-pyramid-(frozen|ft-cp)(_fpn)?_8xb2-(1x|80k)_'
                  r'(coco|ade20k-512x512)|linear_sd-1-5-b\d+_8xb16-28e_in1k)\.py$')

pytestmark = pytest.mark.usefixtures('one_thread')


def test_all_configs_found_and_named():
    names = [osp.basename(p) for p in CONFIGS]
    assert len(names) >= 5
    for kind in ('mask-rcnn', 'upernet', 'linear'):
        assert any(n.startswith(kind) for n in names), kind
    for name in names:
        assert NAME.match(name), name
    assert osp.isfile(osp.join(ROOT, 'configs', 'sd', 'README.md'))


def real_model(cfg, scope):
    """The config's model with SD 1.x's published widths, on the meta device."""
    model = copy.deepcopy(cfg.model)
    model.backbone.pop('_delete_', None)
    model.backbone.update(pretrained=None, unet_config=SD_ARCHS['sd-1.x']['unet'],
                          vae_config=SD_ARCHS['sd-1.x']['vae'],
                          text=dict(type='learned', num_tokens=77))
    if scope == 'mmpretrain':
        model.data_preprocessor = copy.deepcopy(cfg.data_preprocessor)
    with shapes_only():
        return MODELS.build(model)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_real_widths_and_switches(path):
    cfg, scope = load(path)
    model, bb_cfg = cfg.model, cfg.model.backbone
    assert bb_cfg.type == 'SDBackbone' and 'mmdiffssl' in cfg.custom_imports.imports
    assert bb_cfg.pretrained == 'checkpoints/stable-diffusion-v1-5'
    assert bb_cfg.text == dict(type='null')
    built = real_model(cfg, scope)
    bb = built.backbone
    name = osp.basename(path)
    if scope == 'mmpretrain':
        assert model.type == 'DiffSSLClassifier' and model.head.get('in_channels') is None
        assert bb.blocks == (7, ) and built.head.in_channels == (bb.out_channels[0], ) == (1280, )
        assert cfg.data_preprocessor.mean == [127.5] * 3 and cfg.data_preprocessor.to_rgb
        return
    pre = model.data_preprocessor
    assert pre.mean == [127.5] * 3 and pre.std == [127.5] * 3 and pre.bgr_to_rgb
    assert bb.blocks == (9, 8, 7, 6) and bb.size_divisibility == 64
    if scope == 'mmdet':
        assert model.type == 'DiffMaskRCNN' and pre.pad_size_divisor is None
        assert built.data_preprocessor.pad_size_divisor == 64
        assert bb.out_strides == [4, 8, 16, 32, 64] == model.rpn_head.anchor_generator.strides
        assert model.neck.in_channels is None
        assert built.neck.in_channels == bb.out_channels == [512, 320, 640, 1280, 1280]
        assert model.neck.num_outs == 5
    else:
        assert model.type == 'DiffEncoderDecoder' and model.pretrained is None
        assert pre.get('test_cfg') is None
        assert built.data_preprocessor.test_cfg == dict(size_divisor=64)
        assert bb.out_strides == [8, 16, 32, 64]
        assert model.decode_head.in_channels is None
        assert built.decode_head.in_channels == bb.out_channels == [320, 640, 1280, 1280]
        aux = built.auxiliary_head
        assert aux.in_index == 1 and aux.in_channels == bb.out_channels[1] == 640
    fine_tuned = '-ft-' in name
    assert bb.frozen is not fine_tuned and bb.with_cp is fine_tuned
    keys = cfg.optim_wrapper.get('paramwise_cfg', {}).get('custom_keys', {})
    assert (keys.get('backbone') == dict(lr_mult=0.1)) is fine_tuned
    if fine_tuned:   # every parameter that requires grad is used: DDP needs no search
        assert not cfg.get('find_unused_parameters', False)


# ---------------------------------------------------------------------- training step
def det_inputs():
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(batch_size=2, image_shapes=[(3, 64, 64)] * 2, num_items=[2, 1],
                          num_classes=2, with_mask=True)


def seg_inputs():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    rng = np.random.RandomState(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.from_numpy(rng.randint(0, 255, (3, 64, 64)).astype(np.uint8)))
        sample = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                             pad_shape=(64, 64)))
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(rng.randint(0, 3, (1, 64, 64))))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def cls_inputs():
    from mmpretrain.structures import DataSample
    rng = np.random.RandomState(0)
    return dict(inputs=[torch.from_numpy(rng.randint(0, 255, (3, 64, 64)).astype(np.uint8))
                        for _ in range(2)],
                data_samples=[DataSample().set_gt_label(i) for i in range(2)])


def tiny_model_cfg(cfg, scope, folder):
    """The config's model on the tiny SD, thin heads; the neck's and heads' input widths
    follow the tiny outputs (VAE stride 4: 16; up_blocks.3, 2, 1, 0: 16, 16, 32, 32)."""
    model = copy.deepcopy(cfg.model)
    bb = model.backbone
    bb.pretrained = folder
    if scope == 'mmdet':
        model.data_preprocessor.batch_augments = None
        model.neck.update(out_channels=16)
        model.rpn_head.update(in_channels=16, feat_channels=16)
        model.roi_head.bbox_roi_extractor.out_channels = 16
        model.roi_head.bbox_head.update(in_channels=16, fc_out_channels=32, num_classes=2)
        model.roi_head.mask_roi_extractor.out_channels = 16
        model.roi_head.mask_head.update(in_channels=16, conv_out_channels=16, num_convs=1,
                                        num_classes=2)
        model.train_cfg.rpn.sampler.num = 32
        model.train_cfg.rcnn.sampler.num = 32
    elif scope == 'mmseg':
        model.data_preprocessor.size = (64, 64)
        model.decode_head.update(channels=16, num_classes=3, norm_cfg=dict(type='BN'))
        model.auxiliary_head.update(channels=8, num_classes=3, norm_cfg=dict(type='BN'))
    else:
        model.data_preprocessor = copy.deepcopy(cfg.data_preprocessor)
        model.data_preprocessor.num_classes = 2
        bb.dtype = 'fp32'
        model.head.update(num_classes=2, topk=(1, ))
    return model


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_training_step_on_the_tiny_model(path, tiny_sd):
    cfg, scope = load(path)
    model = MODELS.build(tiny_model_cfg(cfg, scope, tiny_sd))
    model.init_weights()
    bb = model.backbone
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = {id(p): g['lr'] for g in optim_wrapper.optimizer.param_groups for p in g['params']}
    base_lr = cfg.optim_wrapper.optimizer.lr
    if not bb.frozen:
        unet_param = next(p for p in bb.unet.parameters() if p.requires_grad)
        assert lrs[id(unet_param)] == pytest.approx(0.1 * base_lr)
    unet_before = {k: v.clone() for k, v in bb.unet.state_dict().items()}
    head = model.neck if scope == 'mmdet' else (model.decode_head if scope == 'mmseg'
                                                 else model.head)
    head_before = {k: v.clone() for k, v in head.state_dict().items()}
    data = {'mmdet': det_inputs, 'mmseg': seg_inputs, 'mmpretrain': cls_inputs}[scope]()
    model.train()
    log_vars = model.train_step(data, optim_wrapper)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in log_vars.values())
    assert any(not torch.equal(v, head_before[k]) for k, v in head.state_dict().items())
    unet_changed = any(not torch.equal(v, unet_before[k]) for k, v in bb.unet.state_dict().items())
    assert unet_changed is (not bb.frozen)
    assert not bb.vae.training and (bb.unet.training is not bb.frozen)
