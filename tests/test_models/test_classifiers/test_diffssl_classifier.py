"""DiffSSLClassifier and check_matches_backbone: head/backbone layout agreement at build time."""
import pytest
import torch

pytest.importorskip('mmpretrain')

import mmdiffssl  # noqa: E402,F401
from mmengine.registry import MODELS, init_default_scope  # noqa: E402

from mmdiffssl.models.classifiers import check_matches_backbone  # noqa: E402

TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult='1,2,2',
            attention_resolutions='16,8', num_head_channels=16, learn_sigma=False)
SMALL_ATTN = dict(embed_dims=32, num_heads=4, num_layers=1)


pytestmark = pytest.mark.usefixtures('one_thread')


def backbone_cfg(blocks=(7, 8, 10), timesteps=(50, 150), **kwargs):
    return dict(type='ADMBackbone', arch=TINY, random_init='redraw', blocks=blocks,
                timesteps=timesteps, **kwargs)


def difformer_cfg(blocks=(7, 8, 10), timesteps=(50, 150), in_channels=(128, 128, 128),
                  in_sizes=(8, 8, 16)):
    return dict(type='DifFormerHead', num_classes=4, in_channels=in_channels,
                in_sizes=in_sizes, blocks=blocks, timesteps=timesteps, **SMALL_ATTN)


def build(backbone, head, neck=None):
    init_default_scope('mmpretrain')
    return MODELS.build(dict(type='DiffSSLClassifier', backbone=backbone, neck=neck, head=head,
                             data_preprocessor=dict(mean=[127.5] * 3, std=[127.5] * 3,
                                                    to_rgb=True)))


def test_matching_difformer_builds_and_runs():
    model = build(backbone_cfg(), difformer_cfg()).eval()
    out = model(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert out.shape == (2, 4)


def test_block_order_mismatch_is_refused():
    """Blocks 7 and 8 have the same channels: only the declared order can catch the swap."""
    with pytest.raises(ValueError, match=r'blocks \(7, 8, 10\).*\(8, 7, 10\).*another order'):
        build(backbone_cfg(blocks=(8, 7, 10)), difformer_cfg(in_sizes=(8, 8, 16)))
    # The same check on configs, without building anything.
    with pytest.raises(ValueError, match='another order'):
        check_matches_backbone(difformer_cfg(), backbone_cfg(blocks=(8, 7, 10)))
    check_matches_backbone(difformer_cfg(), backbone_cfg())
    # DifFormerHead's defaults (the paper's 19, 24, 30) count as declared.
    paper = dict(type='DifFormerHead', num_classes=4, in_channels=(1, 1, 1), in_sizes=(1, 1, 1))
    with pytest.raises(ValueError, match=r'\(19, 24, 30\)'):
        check_matches_backbone(paper, backbone_cfg())


def test_timestep_mismatches_are_refused():
    with pytest.raises(ValueError, match='timesteps'):
        build(backbone_cfg(timesteps=(150, 50)), difformer_cfg())
    with pytest.raises(ValueError, match="fuse_timesteps='concat'"):
        check_matches_backbone(difformer_cfg(), backbone_cfg(fuse_timesteps='mean'))
    attn = dict(type='AttentionPoolHead', num_classes=4, in_channels=128, in_sizes=8,
                num_timesteps=1, **SMALL_ATTN)
    with pytest.raises(ValueError, match='num_timesteps=1'):
        build(backbone_cfg(blocks=(8, )), attn)
    # 'mean' fusion: one timestep per output.
    model = build(backbone_cfg(blocks=(8, ), fuse_timesteps='mean'),
                  dict(attn, in_channels=64))
    assert model.head.num_timesteps == 1


def test_channel_mismatch_is_refused_unless_a_neck_sits_between():
    head = dict(type='PooledLinearHead', num_classes=4, in_channels=64)
    with pytest.raises(ValueError, match=r"out_channels \[128\]"):
        build(backbone_cfg(blocks=(8, )), head)
    build(backbone_cfg(blocks=(8, )), dict(head, in_channels=128))
    # With a neck the head's inputs are the neck's: channels are not compared.
    build(backbone_cfg(blocks=(8, )), dict(type='LinearClsHead', num_classes=4,
                                           in_channels=128),
          neck=dict(type='GlobalAveragePooling'))


def test_difeed_backbone_is_checked_through_its_wrapped_backbone():
    inner = backbone_cfg(blocks=(8, ), timesteps=(150, ), noise='fresh')
    head = dict(type='AttentionPoolHead', num_classes=4, in_channels=64, in_sizes=8,
                blocks=(8, ), timesteps=(150, ), **SMALL_ATTN)
    model = build(dict(type='DifFeedBackbone', backbone=inner, feedback_blocks=(8, 10, 12)),
                  head)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    with pytest.raises(ValueError, match='blocks'):
        check_matches_backbone(dict(head, blocks=(9, )),
                               dict(type='DifFeedBackbone', backbone=inner))
