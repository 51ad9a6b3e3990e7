"""The DiT, PixArt and SDXL configs (configs/dit, configs/pixart, configs/sdxl): names, READMEs
and the widths and padding derived at the published sizes.

The models are built on the meta device with the published diffusers configs of DiT-XL/2 256,
PixArt-α XL/2 512 and SDXL base 1.0 (below, from their hub ``config.json`` files) in place of
the weights folders, and text embeddings of the published widths; the neck's / heads'
``in_channels`` and the padding the configs leave out come from the backbone. Training runs of
these configs on tiny models: tests/test_dense/test_transformer_dense_tools.py.
"""
import copy
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.registry import MODELS

from conftest import ROOT
from test_configs_build import load

pytest.importorskip('diffusers')

import mmdiffssl.models.detectors  # noqa: E402,F401  (until mmdiffssl.models imports them)
import mmdiffssl.models.segmentors  # noqa: E402,F401
from mmdiffssl.models.backbones.base import shapes_only  # noqa: E402
from mmdiffssl.models.unets.diffusers_blocks import SD_ARCHS  # noqa: E402

FOLDERS = ('dit', 'pixart', 'sdxl')
CONFIGS = sorted(p for f in FOLDERS for p in glob.glob(osp.join(ROOT, 'configs', f, '*.py')))
NAME = re.compile(r'^(linear|mask-rcnn|upernet)_(dit-xl-2-256|pixart-alpha-xl-2-512|sdxl-base)'
                  r'-(b\d+|pyramid)(-frozen)?(_(simple-fpn|fpn))?_8xb(2|16)-(1x|80k|28e)_'
                  r'(coco|ade20k-512x512|in1k)\.py$')

DIT_XL_2_256 = dict(num_attention_heads=16, attention_head_dim=72, in_channels=4,
                    out_channels=8, num_layers=28, sample_size=32, patch_size=2,
                    num_embeds_ada_norm=1000, norm_type='ada_norm_zero')
PIXART_XL_2_512 = dict(num_attention_heads=16, attention_head_dim=72, in_channels=4,
                       out_channels=8, num_layers=28, cross_attention_dim=1152, sample_size=64,
                       patch_size=2, caption_channels=4096, num_embeds_ada_norm=1000,
                       norm_type='ada_norm_single', norm_elementwise_affine=False,
                       norm_eps=1e-6)
SDXL_BASE_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
    addition_embed_type='text_time', addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'),
    up_block_types=('CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'))
SDXL_VAE = dict(SD_ARCHS['sd-1.x']['vae'], sample_size=1024, scaling_factor=0.13025)


def test_all_configs_found_named_and_documented():
    names = [osp.basename(p) for p in CONFIGS]
    assert len(names) == 8
    for name in names:
        assert NAME.match(name), name
    for folder in FOLDERS:
        assert osp.isfile(osp.join(ROOT, 'configs', folder, 'README.md')), folder


@pytest.fixture(scope='module')
def text_files(tmp_path_factory):
    root = tmp_path_factory.mktemp('texts')
    pixart, sdxl = str(root / 't5.pt'), str(root / 'sdxl.pt')
    torch.save(dict(prompt_embeds=torch.zeros(120, 4096),
                    prompt_attention_mask=torch.ones(120)), pixart)
    torch.save(dict(prompt_embeds=torch.zeros(77, 2048),
                    pooled_prompt_embeds=torch.zeros(1280)), sdxl)
    return dict(PixArtBackbone=pixart, SDXLBackbone=sdxl)


def published(cfg, scope, text_files):
    model = copy.deepcopy(cfg.model)
    bb = model.backbone
    bb.pop('_delete_', None)
    kind = bb.type
    bb.pretrained = None
    if kind == 'SDXLBackbone':
        bb.update(unet_config=SDXL_BASE_UNET, vae_config=SDXL_VAE)
    else:
        bb.update(transformer_config=DIT_XL_2_256 if kind == 'DiTBackbone' else PIXART_XL_2_512,
                  vae_config=SD_ARCHS['sd-1.x']['vae'])
    if kind in text_files:
        bb.text = dict(type='file', path=text_files[kind])
    if scope == 'mmpretrain':
        model.data_preprocessor = copy.deepcopy(cfg.data_preprocessor)
    with shapes_only():
        return MODELS.build(model)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_published_widths_and_padding(path, text_files):
    cfg, scope = load(path)
    assert 'mmdiffssl' in cfg.custom_imports.imports
    built = published(cfg, scope, text_files)
    bb, name = built.backbone, osp.basename(path)
    assert bb.frozen
    sdxl = bb.family == 'SDXL'
    if scope == 'mmpretrain':
        expected = 640 if sdxl else 1152
        assert cfg.model.head.get('in_channels') is None
        assert built.head.in_channels == (bb.out_channels[0], ) == (expected, )
        assert bb.out_strides == [16]
        return
    if sdxl:
        assert bb.blocks == (7, 6, 5) and bb.out_strides == [4, 8, 16, 32]
        assert built.neck.in_channels == bb.out_channels == [512, 320, 640, 1280]
        assert built.data_preprocessor.pad_size_divisor == 32
        return
    assert bb.blocks == (14, ) and bb.out_channels == [1152] and bb.out_strides == [16]
    assert cfg.model.neck.get('in_channels') is None and built.neck.in_channels == 1152
    if scope == 'mmdet':
        assert built.data_preprocessor.pad_size_divisor == 16
        assert 'mask-rcnn' in name
    else:
        assert built.data_preprocessor.test_cfg == dict(size_divisor=16)
        assert built.decode_head.in_channels == [256] * 4
