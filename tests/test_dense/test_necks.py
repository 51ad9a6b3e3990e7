"""DiffSimpleFPN and DiffLN2d: shapes, options, errors, registry names."""
import pytest
import torch

pytest.importorskip('mmcv')

from mmengine.registry import MODELS  # noqa: E402

from mmdiffssl.models.necks import DiffLN2d, DiffSimpleFPN  # noqa: E402
from mmdiffssl.registry import registered_class  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_registered_in_root_and_not_shadowed_by_mmdet_or_mmseg():
    assert registered_class(MODELS, 'DiffSimpleFPN') is DiffSimpleFPN
    assert MODELS.get('DiffLN2d') is DiffLN2d      # a class itself: build_norm_layer needs one
    for scope in ('mmdet', 'mmseg'):
        mod = pytest.importorskip(f'{scope}.registry')
        mod.MODELS.import_from_location()
        for name in ('DiffSimpleFPN', 'DiffLN2d'):
            assert name not in mod.MODELS.module_dict      # no child entry would shadow ours
            assert mod.MODELS.get(name) is MODELS.get(name)


@pytest.mark.parametrize('norm_cfg', [None, dict(type='DiffLN2d'),
                                      dict(type='GN', num_groups=4)])
def test_vitdet_pyramid_shapes(norm_cfg):
    neck = DiffSimpleFPN(in_channels=64, out_channels=16, num_outs=5, norm_cfg=norm_cfg)
    x = torch.randn(2, 64, 4, 6)     # a stride-16 map of a 64 x 96 image
    outs = neck((x, ))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 16, 24), (2, 16, 8, 12), (2, 16, 4, 6),
                                              (2, 16, 2, 3), (2, 16, 1, 2)]
    # ViTDet's channel split: C/4 at x4, C/2 at x2, C at x1 and x0.5
    assert [conv.conv.in_channels for conv in neck.lateral_convs] == [16, 32, 64, 64]
    has_norm = norm_cfg is not None
    assert all(conv.with_norm == has_norm for conv in neck.fpn_convs)
    assert (len(neck.stages[0]) == 4) == has_norm  # deconv, [norm], GELU, deconv
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None for p in neck.parameters())


def test_in_index_sequence_and_custom_scales():
    neck = DiffSimpleFPN(in_channels=[8, 32], in_index=1, out_channels=8, num_outs=3,
                         scale_factors=(2.0, 1.0))
    outs = neck([torch.randn(1, 8, 8, 8), torch.randn(1, 32, 4, 4)])
    assert [o.shape[-1] for o in outs] == [8, 4, 2]
    assert neck.in_channels == 32


def test_errors():
    with pytest.raises(ValueError, match='scale factor 3.0'):
        DiffSimpleFPN(in_channels=64, scale_factors=(3.0, ))
    with pytest.raises(ValueError, match='num_outs'):
        DiffSimpleFPN(in_channels=64, num_outs=3)
    with pytest.raises(ValueError, match='divisible'):
        DiffSimpleFPN(in_channels=66)
    with pytest.raises(ValueError, match='in_index'):
        DiffSimpleFPN(in_channels=[64], in_index=2)
    neck = DiffSimpleFPN(in_channels=64, out_channels=8)
    with pytest.raises(ValueError, match='built for 64 input channels'):
        neck((torch.randn(1, 32, 4, 4), ))


def test_ln2d_normalises_channels():
    norm = DiffLN2d(6)
    x = torch.randn(2, 6, 3, 5) * 4 + 3
    y = norm(x)
    assert torch.allclose(y.mean(1), torch.zeros(2, 3, 5), atol=1e-5)
    assert torch.allclose(y.var(1, unbiased=False), torch.ones(2, 3, 5), atol=1e-3)
    ref = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6, ), eps=1e-6)
    assert torch.allclose(y, ref.permute(0, 3, 1, 2), atol=1e-6)
