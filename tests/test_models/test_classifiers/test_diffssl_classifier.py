"""DiffSSLClassifier: heads take in_channels, in_sizes, num_timesteps, blocks and timesteps
from the backbone it builds first; given values that disagree are refused, naming both."""
import pytest
import torch

pytest.importorskip('mmpretrain')

import mmdiffssl  # noqa: E402,F401
from mmengine.registry import MODELS, init_default_scope  # noqa: E402

TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult='1,2,2',
            attention_resolutions='16,8', num_head_channels=16, learn_sigma=False)
SMALL_ATTN = dict(embed_dims=32, num_heads=4, num_layers=1)


pytestmark = pytest.mark.usefixtures('one_thread')


def backbone_cfg(blocks=(7, 8, 10), timesteps=(50, 150), **kwargs):
    return dict(type='ADMBackbone', arch=TINY, random_init='redraw', blocks=blocks,
                timesteps=timesteps, **kwargs)


def difformer_cfg(**kwargs):
    return dict(type='DifFormerHead', num_classes=4, **SMALL_ATTN, **kwargs)


def attention_cfg(**kwargs):
    return dict(type='AttentionPoolHead', num_classes=4, **SMALL_ATTN, **kwargs)


def build(backbone, head, neck=None):
    init_default_scope('mmpretrain')
    return MODELS.build(dict(type='DiffSSLClassifier', backbone=backbone, neck=neck, head=head,
                             data_preprocessor=dict(mean=[127.5] * 3, std=[127.5] * 3,
                                                    to_rgb=True)))


def test_difformer_takes_everything_from_the_backbone_and_runs():
    """Blocks 7, 8 (stride 4: 8 x 8 at 32 px) and 10 (stride 2: 16 x 16), 64 channels x 2
    timesteps each."""
    model = build(backbone_cfg(), difformer_cfg()).eval()
    head = model.head
    assert head.blocks == (7, 8, 10) and head.timesteps == (50, 150)
    assert head.in_channels == (128, 128, 128) and head.in_sizes == (8, 8, 16)
    assert head.num_timesteps == 2 and head.feat_index == (0, 1, 2)
    assert model(torch.rand(2, 3, 32, 32) * 2 - 1).shape == (2, 4)
    # the same values given explicitly build the same head
    given = build(backbone_cfg(), difformer_cfg(blocks=(7, 8, 10), timesteps=(50, 150),
                                                in_channels=(128, 128, 128),
                                                in_sizes=(8, 8, 16)))
    assert given.head.in_channels == head.in_channels and given.head.in_sizes == head.in_sizes


def test_block_order_mismatch_is_refused():
    """Blocks 7 and 8 have the same channels: only the declared order can catch the swap."""
    with pytest.raises(ValueError, match=r'blocks=\[7, 8, 10\].*\[8, 7, 10\].*another order'):
        build(backbone_cfg(blocks=(8, 7, 10)), difformer_cfg(blocks=(7, 8, 10)))
    # DifFormerHead's defaults (the paper's 19, 24, 30) do not count: derived from the backbone
    assert build(backbone_cfg(), difformer_cfg()).head.blocks == (7, 8, 10)


def test_timestep_mismatches_are_refused():
    with pytest.raises(ValueError, match=r'timesteps=\[50, 150\].*timesteps=\[150, 50\]'):
        build(backbone_cfg(timesteps=(150, 50)), difformer_cfg(timesteps=(50, 150)))
    with pytest.raises(ValueError, match="fuse_timesteps='concat'"):
        build(backbone_cfg(fuse_timesteps='mean'), difformer_cfg())
    with pytest.raises(ValueError, match=r'num_timesteps=1 in the config.*num_timesteps=2'):
        build(backbone_cfg(blocks=(8, )), attention_cfg(num_timesteps=1))
    # 'mean' fusion: one timestep per output, 64 channels
    model = build(backbone_cfg(blocks=(8, ), fuse_timesteps='mean'), attention_cfg())
    assert model.head.num_timesteps == 1 and model.head.in_channels == (64, )
    # blocks/timesteps are optional records of AttentionPoolHead: not filled, checked if given
    assert model.head.blocks is None and model.head.timesteps is None
    with pytest.raises(ValueError, match=r'blocks=\[9\].*blocks=\[8\]'):
        build(backbone_cfg(blocks=(8, )), attention_cfg(blocks=(9, )))


def test_in_channels_and_in_sizes_are_derived_or_refused_naming_both():
    model = build(backbone_cfg(blocks=(8, )), dict(type='PooledLinearHead', num_classes=4))
    assert model.head.in_channels == (128, ) and model.head.fc.in_features == 128 * 4
    with pytest.raises(ValueError, match=r'PooledLinearHead.*in_channels=64 in the config.*'
                                         r'in_channels=128.*block 8'):
        build(backbone_cfg(blocks=(8, )), dict(type='PooledLinearHead', num_classes=4,
                                               in_channels=64))
    # feat_index picks the outputs: blocks 7 and 10
    model = build(backbone_cfg(), dict(type='MLPHead', num_classes=4, feat_index=(0, 2),
                                       hidden_dims=(8, )))
    assert model.head.in_channels == (128, 128)
    # in_sizes: those of one input size at the strides (4, 4, 2): 8, 8, 16 at 32 px
    with pytest.raises(ValueError, match=r'in_sizes=\[8, 16, 16\] in the config.*'
                                         r'in_sizes=\[8, 8, 16\].*strides \[4, 4, 2\]'):
        build(backbone_cfg(), difformer_cfg(in_sizes=(8, 16, 16)))
    # another input size (16 px) is fine: the backbone cannot know the training input size
    assert build(backbone_cfg(), difformer_cfg(in_sizes=(4, 4, 8))).head.in_sizes == (4, 4, 8)
    # sizes are compared as the head pools them: 32 and 16 both pool to 8 for block 10
    head = attention_cfg(feat_index=(0, 2), pool_size=8, in_sizes=(8, 32))
    assert build(backbone_cfg(), head).head.in_sizes == (8, 32)
    # mmpretrain's own heads read the last output
    model = build(backbone_cfg(blocks=(8, )), dict(type='LinearClsHead', num_classes=4),
                  neck=dict(type='GlobalAveragePooling'))
    assert model.head.in_channels == 128


def test_neck_gets_in_channels_and_the_head_keeps_its_own():
    neck = dict(type='LinearNeck', out_channels=16, gap_dim=2)
    head = dict(type='LinearClsHead', num_classes=4, in_channels=16)
    model = build(backbone_cfg(blocks=(8, )), head, neck=neck)
    assert model.neck.in_channels == 128 and model.head.in_channels == 16
    with pytest.raises(ValueError, match=r'neck \(LinearNeck\).*in_channels=64.*128'):
        build(backbone_cfg(blocks=(8, )), head, neck=dict(neck, in_channels=64))


def test_difeed_backbone_is_read_through_its_wrapped_backbone():
    inner = backbone_cfg(blocks=(8, ), timesteps=(150, ), noise='fresh')
    difeed = dict(type='DifFeedBackbone', backbone=inner, feedback_blocks=(8, 10, 12))
    model = build(difeed, attention_cfg())
    assert (model.head.in_channels, model.head.in_sizes, model.head.num_timesteps) == (
        (64, ), (8, ), 1)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    with pytest.raises(ValueError, match='blocks'):
        build(difeed, attention_cfg(blocks=(9, )))


def test_cached_features_and_pixels_give_their_channels():
    from mmdiffssl.datasets.feature_cache import CachedFeatures
    layout = [(8, 64, 4, 4)]
    model = build(dict(type='CachedFeatures', layout=layout),
                  dict(type='PooledLinearHead', num_classes=4, pool_size=4))
    assert isinstance(model.backbone, CachedFeatures) and model.head.in_channels == (64, )
    model = build(dict(type='CachedFeatures', layout=layout), attention_cfg())
    assert model.head.in_sizes == (4, )     # the cached size
    model = build(dict(type='PixelBackbone', in_channels=3),
                  dict(type='PooledLinearHead', num_classes=4, pool_size=32))
    assert model.head.in_channels == (3, )


def test_backbones_without_shapes_leave_the_head_as_configured():
    model = build(dict(type='ResNet_CIFAR', depth=18),
                  dict(type='LinearClsHead', num_classes=4, in_channels=512),
                  neck=dict(type='GlobalAveragePooling'))
    assert model.head.in_channels == 512
