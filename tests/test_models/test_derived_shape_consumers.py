"""mmdiffssl.models.derived_shapes: backbone shapes of every kind of backbone, and the
detector (DiffMaskRCNN) and segmentor (DiffEncoderDecoder) that fill their necks, heads and
padding from them, refusing given values that disagree with a message naming both."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

import mmdiffssl  # noqa: F401
import mmdiffssl.models.detectors  # noqa: F401  (registers DiffMaskRCNN)
import mmdiffssl.models.segmentors  # noqa: F401  (registers DiffEncoderDecoder)
from mmdiffssl.models.backbones.base import shapes_only
from mmdiffssl.models.derived_shapes import (accepted_args, backbone_shapes, derive_cls_head,
                                             derived_model_config)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASES = osp.join(ROOT, 'configs', '_base_', 'models')
TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult='1,2,2',
            attention_resolutions='16,8', num_head_channels=16, learn_sigma=False)

pytestmark = pytest.mark.usefixtures('one_thread')


def adm(**kwargs):
    return dict(dict(type='ADMBackbone', arch=TINY, random_init='redraw', blocks=(8, ),
                     timesteps=(50, )), **kwargs)


# ---------------------------------------------------------------------- backbone shapes
def test_shapes_of_a_diffusion_backbone_config_on_the_meta_device():
    shapes = backbone_shapes(adm(blocks='pyramid', pyramid_strides=(2, 4), timesteps=(5, 9)))
    assert shapes.channels == (128, 128) and shapes.strides == (2, 4)
    assert shapes.sizes == (16, 8) and shapes.blocks == (10, 8)
    assert shapes.fused_timesteps == 2 and shapes.size_divisibility == 4
    assert backbone_shapes(adm(timesteps=(5, 9), fuse_timesteps='mean')).fused_timesteps == 1


def test_shapes_through_wrappers_caches_and_pixels():
    difeed = backbone_shapes(dict(type='DifFeedBackbone', backbone=adm(),
                                  feedback_blocks=(10, 12)))
    assert difeed.channels == (64, ) and difeed.sizes == (8, ) and difeed.size_divisibility == 4
    cached = backbone_shapes(dict(type='CachedFeatures', layout=[(8, 64, 2, 2), (10, 64, 4, 3)]))
    assert cached.channels == (64, 64) and cached.sizes == (2, (4, 3))
    assert cached.blocks == (8, 10) and cached.fused_timesteps is None
    pixels = backbone_shapes(dict(type='PixelBackbone', in_channels=1))
    assert pixels.channels == (1, ) and pixels.strides == (1, )


def test_backbones_without_shapes_are_not_built():
    pytest.importorskip('mmpretrain')
    init_default_scope('mmpretrain')
    assert backbone_shapes(dict(type='ResNet', depth=18)) is None


def test_accepted_args_follow_kwargs_into_the_bases():
    pytest.importorskip('mmpretrain')
    pytest.importorskip('mmseg')
    from mmseg.models.decode_heads import FCNHead, UPerHead

    from mmdiffssl.models.heads import DifFormerHead
    for cls in (UPerHead, FCNHead):
        args = accepted_args(cls)
        assert 'in_channels' in args and args['in_index'] == -1
    args = accepted_args(DifFormerHead)
    assert 'feat_index' not in args and 'num_timesteps' not in args   # it derives them
    assert args['blocks'] == (19, 24, 30) and 'embed_dims' in args


def test_only_missing_keys_are_filled_and_the_config_is_not_changed():
    pytest.importorskip('mmpretrain')
    head = dict(type='PooledLinearHead', num_classes=3, pool_size=2)
    filled = derive_cls_head(head, backbone_shapes(adm()))
    assert filled['in_channels'] == 64 and 'in_channels' not in head
    # None counts as left out (it replaces numbers inherited from a base config)
    assert derive_cls_head(dict(head, in_channels=None), backbone_shapes(adm()))[
        'in_channels'] == 64


def test_derived_model_config_lists_what_the_model_classes_fill():
    pytest.importorskip('mmseg')
    cfg = Config.fromfile(osp.join(BASES, 'upernet_adm-tiny.py'))
    init_default_scope('mmseg')
    model, filled = derived_model_config(cfg.model)
    assert model['decode_head']['in_channels'] == [64, 64]
    assert dict(filled) == {'auxiliary_head.in_channels': 64, 'decode_head.in_channels': [64, 64],
                            'data_preprocessor.size_divisor': 4,
                            'data_preprocessor.test_cfg.size_divisor': 4}
    with pytest.raises(ValueError, match='derives no shapes'):
        derived_model_config(dict(type='EncoderDecoder'))


# ---------------------------------------------------------------------- DiffMaskRCNN
def mask_rcnn_cfg():
    pytest.importorskip('mmdet')
    cfg = Config.fromfile(osp.join(BASES, 'mask-rcnn_adm-tiny_fpn.py'))
    init_default_scope('mmdet')
    return copy.deepcopy(cfg.model)


def build_meta(cfg):
    with shapes_only():
        return MODELS.build(cfg)


def test_mask_rcnn_fills_fpn_and_padding():
    model = build_meta(mask_rcnn_cfg())
    assert type(model).__name__ == 'DiffMaskRCNN'
    assert model.neck.in_channels == [64, 64]                 # blocks 10, 8
    assert model.data_preprocessor.pad_size_divisor == 4       # 3 levels: strides 1, 2, 4


def test_mask_rcnn_simple_fpn_reads_its_in_index():
    pytest.importorskip('mmcv')
    cfg = mask_rcnn_cfg()
    cfg.backbone.update(blocks=(10, 3), pyramid_strides=None)   # 64 and 32 channels
    cfg.neck = dict(type='DiffSimpleFPN', out_channels=32, num_outs=5, in_index=1,
                    scale_factors=(4.0, 2.0, 1.0, 0.5))
    assert build_meta(copy.deepcopy(cfg)).neck.in_channels == 32
    cfg.neck.in_channels = [64, 32]                             # every output's: accepted
    assert build_meta(copy.deepcopy(cfg)).neck.in_channels == 32
    cfg.neck.in_channels = 64
    with pytest.raises(ValueError, match=r'neck \(DiffSimpleFPN\): in_channels=64 in the '
                                         r'config.*in_channels=32 at in_index=1'):
        build_meta(cfg)


def test_mask_rcnn_refuses_wrong_fpn_channels_and_padding_naming_both():
    cfg = mask_rcnn_cfg()
    cfg.neck.in_channels = [256, 512, 1024, 2048]               # mmdet's R-50 numbers
    with pytest.raises(ValueError, match=r'DiffMaskRCNN neck \(FPN\): in_channels=\[256, 512, '
                                         r'1024, 2048\] in the config.*in_channels=\[64, 64\]'):
        build_meta(cfg)
    cfg = mask_rcnn_cfg()
    cfg.data_preprocessor.pad_size_divisor = 6
    with pytest.raises(ValueError, match=r'pad_size_divisor=6 in the config.*multiples of 4'):
        build_meta(cfg)
    cfg.data_preprocessor.pad_size_divisor = 32                 # a multiple is fine
    assert build_meta(cfg).data_preprocessor.pad_size_divisor == 32


def test_mask_rcnn_runs_on_cpu_with_the_derived_shapes():
    from mmdet.testing import demo_mm_inputs
    model = MODELS.build(mask_rcnn_cfg())
    assert model.neck.in_channels == [64, 64]
    data = model.data_preprocessor(demo_mm_inputs(batch_size=1, image_shapes=[(3, 30, 30)],
                                                  num_items=[1], num_classes=10), True)
    assert tuple(data['inputs'].shape[-2:]) == (32, 32)         # padded to 4
    feats = model.extract_feat(data['inputs'])
    assert [f.shape[1] for f in feats] == [256] * 5


# ---------------------------------------------------------------------- DiffEncoderDecoder
def upernet_cfg():
    pytest.importorskip('mmseg')
    cfg = Config.fromfile(osp.join(BASES, 'upernet_adm-tiny.py'))
    init_default_scope('mmseg')
    model = copy.deepcopy(cfg.model)
    model.decode_head.norm_cfg = model.auxiliary_head.norm_cfg = dict(type='BN')
    return model


def test_encoder_decoder_fills_heads_and_padding():
    model = build_meta(upernet_cfg())
    assert type(model).__name__ == 'DiffEncoderDecoder'
    assert model.decode_head.in_channels == [64, 64]
    assert model.auxiliary_head.in_channels == 64
    pre = model.data_preprocessor
    assert pre.size is None and pre.size_divisor == 4 and pre.test_cfg == dict(size_divisor=4)
    # a fixed training size: no size_divisor (mmseg takes one of the two), test padding filled
    cfg = upernet_cfg()
    cfg.data_preprocessor.size = (64, 64)
    pre = build_meta(cfg).data_preprocessor
    assert pre.size == (64, 64) and pre.size_divisor is None
    assert pre.test_cfg == dict(size_divisor=4)


def test_encoder_decoder_auxiliary_head_list():
    cfg = upernet_cfg()
    aux = cfg.auxiliary_head
    cfg.auxiliary_head = [dict(aux, in_index=0), dict(aux, in_index=1)]
    model = build_meta(cfg)
    assert [h.in_channels for h in model.auxiliary_head] == [64, 64]


def test_encoder_decoder_refuses_wrong_values_naming_both():
    cfg = upernet_cfg()
    cfg.decode_head.in_channels = [64, 32]
    with pytest.raises(ValueError, match=r'decode_head \(UPerHead\): in_channels=\[64, 32\] in '
                                         r'the config.*in_channels=\[64, 64\] at in_index='):
        build_meta(cfg)
    cfg = upernet_cfg()
    cfg.auxiliary_head.in_channels = 1024
    with pytest.raises(ValueError, match=r'auxiliary_head \(FCNHead\): in_channels=1024.*'
                                         r'in_channels=64'):
        build_meta(cfg)
    cfg = upernet_cfg()
    cfg.data_preprocessor.size = (62, 62)
    with pytest.raises(ValueError, match=r'size=62 in the config.*multiples of 4'):
        build_meta(cfg)
    cfg = upernet_cfg()
    cfg.data_preprocessor.test_cfg = dict(size_divisor=2)
    with pytest.raises(ValueError, match=r'test_cfg.size_divisor=2 in the config.*multiples '
                                         r'of 4'):
        build_meta(cfg)


def test_encoder_decoder_runs_on_cpu_with_the_derived_shapes():
    model = MODELS.build(upernet_cfg()).eval()
    assert model.decode_head.in_channels == [64, 64]
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out = model.decode_head(model.extract_feat(x))
    assert out.shape == (1, 10, 16, 16)


def test_registered_names_are_found_from_every_scope():
    from mmengine.registry import DefaultScope
    for scope in ('mmdet', 'mmseg', 'mmpretrain'):
        pytest.importorskip(scope)
        with DefaultScope.overwrite_default_scope(scope):
            with MODELS.switch_scope_and_registry(scope) as registry:
                for name in ('DiffMaskRCNN', 'DiffEncoderDecoder', 'DiffSSLClassifier'):
                    assert registry.get(name) is not None, (scope, name)


def test_import_of_the_packages_imports_no_mmseg():
    """The segmentor is registered by a builder: mmseg is imported when one is built."""
    import subprocess
    import sys
    code = ('import sys, mmdiffssl, mmdiffssl.models.detectors, mmdiffssl.models.segmentors; '
            "print('mmseg' in sys.modules)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == 'False'
