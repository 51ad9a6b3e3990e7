"""Shapes, channel checks, CLS init and timestep splitting of the diffusion-feature heads."""
import pytest
import torch

pytest.importorskip('mmpretrain')

import mmdiffssl  # noqa: E402,F401
from mmengine.registry import MODELS  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

from mmdiffssl.models.heads import (AttentionPoolHead, CNNHead, DifFormerHead,  # noqa: E402
                                    MLPHead, PooledLinearHead)

SMALL_ATTN = dict(embed_dims=32, num_heads=4, num_layers=2, mlp_ratio=2.0)


def feats(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*s, generator=g) for s in shapes)


def samples(labels):
    return [DataSample().set_gt_label(int(y)) for y in labels]


@pytest.mark.parametrize('cfg, inputs, pre_dims', [
    (dict(type='PooledLinearHead', in_channels=64), [(2, 64, 8, 8)], 64 * 4),
    (dict(type='PooledLinearHead', in_channels=(32, 64), feat_index=(0, 1), pool_size=1),
     [(2, 32, 16, 16), (2, 64, 4, 4)], 96),
    (dict(type='MLPHead', in_channels=64, hidden_dims=(48, 24)), [(2, 64, 8, 8)], 24),
    (dict(type='CNNHead', in_channels=(32, 64), feat_index=(0, 1), channels=(16, 8)),
     [(2, 32, 16, 16), (2, 64, 4, 4)], 8),
    (dict(type='CNNHead', in_channels=64, channels=(16, ), pool_size=2), [(2, 64, 8, 8)], 64),
    (dict(type='AttentionPoolHead', in_channels=128, in_sizes=8, num_timesteps=2,
          **SMALL_ATTN), [(2, 128, 8, 8)], 64),
    (dict(type='AttentionPoolHead', in_channels=(96, 64), in_sizes=(4, 32), feat_index=(0, 1),
          num_timesteps=1, pool_size=16, **SMALL_ATTN), [(2, 96, 4, 4), (2, 64, 32, 32)], 32),
    (dict(type='DifFormerHead', in_channels=(128, 64, 96), in_sizes=(4, 8, 16),
          blocks=(7, 8, 10), timesteps=(50, 150), **SMALL_ATTN),
     [(2, 128, 4, 4), (2, 64, 8, 8), (2, 96, 16, 16)], 64),
])
def test_head_shapes_loss_predict(cfg, inputs, pre_dims):
    head = MODELS.build(dict(cfg, num_classes=5))
    head.init_weights()
    x = feats(*inputs)
    assert head.pre_logits(x).shape == (2, pre_dims)
    assert head(x).shape == (2, 5)
    losses = head.loss(x, samples([1, 3]))
    assert losses['loss'].ndim == 0 and torch.isfinite(losses['loss'])
    losses['loss'].backward()
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)
    preds = head.predict(x)
    assert len(preds) == 2 and preds[0].pred_score.shape == (5, )


def test_linear_head_is_paper_probe():
    """Block 24 of adm-256-uncond (1024 x 16 x 16) pooled to 2x2 is a 4096-d linear probe."""
    head = PooledLinearHead(num_classes=1000, in_channels=1024)
    assert head.fc.in_features == 4096
    x = torch.randn(1, 1024, 16, 16)
    ref = torch.nn.functional.avg_pool2d(x, 8).flatten(1)
    torch.testing.assert_close(head.pre_logits((x, )), ref)


def test_channel_and_size_mismatch_errors():
    with pytest.raises(ValueError, match='in_channels=64'):
        PooledLinearHead(num_classes=3, in_channels=64)((torch.randn(1, 32, 4, 4), ))
    with pytest.raises(ValueError, match='one per selected feature'):
        MLPHead(num_classes=3, in_channels=(8, 8, 8), feat_index=(0, 1))
    with pytest.raises(ValueError, match='not divisible by num_timesteps'):
        AttentionPoolHead(num_classes=3, in_channels=100, in_sizes=8, num_timesteps=3,
                          **SMALL_ATTN)
    head = AttentionPoolHead(num_classes=3, in_channels=64, in_sizes=16, **SMALL_ATTN)
    with pytest.raises(ValueError, match='smaller than the pooled size'):
        head((torch.randn(1, 64, 8, 8), ))
    with pytest.raises(IndexError, match='out of range'):
        CNNHead(num_classes=3, in_channels=8, feat_index=2, channels=(4, ))(
            (torch.randn(1, 8, 4, 4), ))
    with pytest.raises(TypeError, match='derives feat_index'):
        DifFormerHead(num_classes=3, in_channels=(8, ), in_sizes=(4, ), blocks=(3, ),
                      timesteps=(10, ), feat_index=0)
    head = DifFormerHead(num_classes=3, in_channels=(8, 8), in_sizes=(4, 4), blocks=(3, 4),
                         timesteps=(10, ), **SMALL_ATTN)
    with pytest.raises(ValueError, match='one backbone output per block'):
        head(feats((1, 8, 4, 4)))


def test_attention_head_paper_structure_and_zero_cls():
    head = AttentionPoolHead(num_classes=1000, in_channels=1024, in_sizes=16)
    head.init_weights()
    assert torch.count_nonzero(head.cls_token) == 0 and head.cls_token.shape == (1, 1, 1024)
    assert len(head.layers) == 2 and head.layers[0].attn.num_heads == 8
    assert head.layers[0].mlp[0].out_features == 4096
    assert isinstance(head.layers[0].mlp[1], torch.nn.GELU)
    pre = head.pre_layers[0]
    assert pre.norm.normalized_shape == (1024, 16, 16) and pre.proj.kernel_size == (1, 1)
    assert head.fc.in_features == 1024
    # DifFormer at the paper's blocks on adm-256-uncond at 256px: block 30 (512 x 64 x 64)
    # pools to 16, block 19 (1024 x 8 x 8) stays 8.
    dif = DifFormerHead(num_classes=1000, in_channels=(3072, 3072, 1536), in_sizes=(8, 16, 64))
    assert [p.norm.normalized_shape for p in dif.pre_layers] == [
        (1024, 8, 8), (1024, 16, 16), (512, 16, 16)]
    assert dif.fc.in_features == 3 * 1024 and dif.num_timesteps == 3


def test_timesteps_are_split_from_concat_channels():
    """A T=2 head on [x_t0 | x_t1] = the T=1 head (same weights) on each, CLS concatenated."""
    torch.manual_seed(0)
    two = AttentionPoolHead(num_classes=3, in_channels=2 * 16, in_sizes=4, num_timesteps=2,
                            **SMALL_ATTN)
    two.init_weights()
    one = AttentionPoolHead(num_classes=3, in_channels=16, in_sizes=4, **SMALL_ATTN)
    state = {k: v for k, v in two.state_dict().items() if not k.startswith('fc.')}
    one.load_state_dict(state, strict=False)
    x0, x1 = feats((2, 16, 4, 4), (2, 16, 4, 4))
    both = two.pre_logits((torch.cat([x0, x1], dim=1), ))
    expected = torch.cat([one.pre_logits((x0, )), one.pre_logits((x1, ))], dim=1)
    torch.testing.assert_close(both, expected, rtol=1e-5, atol=1e-6)


def test_difformer_tokens_of_all_blocks_share_one_sequence():
    head = DifFormerHead(num_classes=3, in_channels=(8, 8), in_sizes=(2, 4), blocks=(3, 4),
                         timesteps=(10, ), **SMALL_ATTN)
    tokens = head.tokens(feats((2, 8, 2, 2), (2, 8, 4, 4)))
    assert tokens.shape == (2, 4 + 16, 32)
    # Every block's tokens influence the CLS output.
    x = list(feats((2, 8, 2, 2), (2, 8, 4, 4)))
    base = head.pre_logits(tuple(x))
    for i in range(2):
        y = list(x)
        y[i] = y[i] + torch.randn_like(y[i])  # (a constant would vanish in the LayerNorm)
        assert not torch.allclose(head.pre_logits(tuple(y)), base)
