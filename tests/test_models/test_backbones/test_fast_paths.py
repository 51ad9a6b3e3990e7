"""Fast paths of ADMBackbone: autocast dtypes, GroupNorm in fp32, torch.compile.

All on CPU with a tiny arch whose parameters are re-drawn (a freshly built guided-diffusion
U-Net has dead residual branches, which would hide precision problems).
"""
import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mmdiffssl.models.backbones import ADMBackbone

# 3 levels, attention at 16 and 8 px with 2-4 heads; blocks 1-6 input, 7 middle, 8-13 output.
TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult='1,2,2',
            attention_resolutions='16,8', num_head_channels=16, learn_sigma=False)
BLOCKS = (4, 7, 10, 13)  # encoder with attention, middle, decoder with attention, last
TIMESTEPS = (10, 300)



pytestmark = pytest.mark.usefixtures('one_thread')

def backbone(**kwargs):
    kwargs.setdefault('blocks', BLOCKS)
    return ADMBackbone(arch=TINY, timesteps=TIMESTEPS, random_init='redraw', **kwargs).eval()


def images(batch=2, size=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator) * 2 - 1


def min_cosine(a, b):
    """Smallest cosine similarity of one image's flattened feature, over the batch."""
    return F.cosine_similarity(a.flatten(1).double(), b.flatten(1).double(), dim=1).min().item()


def same_weights(src, **kwargs):
    dst = backbone(**kwargs)
    dst.unet.load_state_dict(src.unet.state_dict())
    return dst


def cpu_supports(dtype):
    try:
        with torch.autocast('cpu', dtype=dtype):
            torch.nn.functional.conv2d(torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3))
        return True
    except RuntimeError:
        return False


@pytest.mark.parametrize('dtype', ['bf16', 'fp16'])
def test_low_precision_features_agree_with_fp32(dtype):
    if not cpu_supports(torch.bfloat16 if dtype == 'bf16' else torch.float16):
        pytest.skip(f'no CPU autocast support for {dtype} here')
    fp32 = backbone()
    low = same_weights(fp32, dtype=dtype)
    x = images()
    with torch.no_grad():
        ref = fp32(x)
        out = low(x)
    for block, a, b in zip(BLOCKS, out, ref):
        assert a.dtype == torch.float32
        assert min_cosine(a, b) >= 0.999, f'block {block} ({dtype})'
        assert not torch.equal(a, b)  # autocast really ran in low precision


class _DtypeLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ('native_group_norm', 'convolution'):
            self.seen.append((name, args[0].dtype))
        return func(*args, **(kwargs or {}))


def test_bf16_autocast_keeps_group_norm_in_fp32():
    bb = backbone(dtype='bf16')
    with torch.no_grad(), _DtypeLog() as log:
        bb(images())
    norms = {dtype for name, dtype in log.seen if name == 'native_group_norm'}
    convs = {dtype for name, dtype in log.seen if name == 'convolution'}
    assert norms == {torch.float32}
    assert convs == {torch.bfloat16}


def test_compile_arguments():
    with pytest.raises(TypeError, match='compile must be'):
        backbone(compile='yes')
    with pytest.raises(ValueError, match='needs compile=True'):
        backbone(cuda_graphs=True)
    with pytest.raises(ValueError, match='reduce-overhead'):
        backbone(compile=dict(mode='max-autotune'), cuda_graphs=True)
    eager = backbone()
    assert eager.compile_kwargs is None
    assert all(p.is_contiguous() for p in eager.unet.parameters())
    compiled = backbone(compile=dict(mode='max-autotune'))
    assert compiled.compile_kwargs == dict(mode='max-autotune')
    weights = [p for p in compiled.unet.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)


def test_compiled_path_traces_as_one_graph_and_matches_eager():
    """The compiled feature function, traced by dynamo + AOTAutograd without inductor
    (seconds on CPU): one graph without breaks, cached per blocks request."""
    blocks = (8, 4)  # a decoder block (skip concatenation) and an encoder block
    eager = backbone(blocks=blocks)
    traced = same_weights(eager, blocks=blocks,
                          compile=dict(backend='aot_eager', fullgraph=True))
    x = images()
    with torch.no_grad():
        want = eager(x)
        got = traced(x)
        got_again = traced(images(seed=1))
    assert list(traced._compiled_fns) == [((4, 8), 'fp32', 'cpu')]
    for a, b in zip(got, want):
        assert a.is_contiguous()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert not torch.equal(got[0], got_again[0])  # new pixels, new features
    feats = traced.intermediates(x, blocks=(4, ))
    torch.testing.assert_close(feats[4], eager.intermediates(x, blocks=(4, ))[4],
                               rtol=1e-4, atol=1e-4)
    assert len(traced._compiled_fns) == 2
    copied = copy.deepcopy(traced)  # compiled functions are not copied; the copy recompiles
    assert copied._compiled_fns == {} and len(traced._compiled_fns) == 2


def test_compiled_with_checkpointing_under_grad_runs_eagerly():
    bb = backbone(frozen=False, with_cp=True, compile=dict(backend='aot_eager'))
    out = bb(images())
    out[0].sum().backward()
    assert bb._compiled_fns == {}
    assert any(p.grad is not None for p in bb.unet.parameters())


def test_cuda_graphs_on_cpu_warns_and_runs():
    bb = backbone(blocks=(2, ), compile=dict(backend='aot_eager'), cuda_graphs=True)
    with pytest.warns(UserWarning, match='no effect on cpu'):
        first = bb(images())
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # warns once only
        bb(images())
    assert first[0].shape == (2, 64, 16, 16)  # 32 channels x 2 timesteps


@pytest.mark.slow
@pytest.mark.parametrize('dtype', ['fp32', 'bf16'])
def test_inductor_compile_matches_eager(dtype):
    """torch.compile with inductor (cold compile on CPU takes 30-70 s)."""
    eager = backbone(blocks=(4, 7), dtype=dtype)
    compiled = same_weights(eager, blocks=(4, 7), dtype=dtype, compile=True)
    x = images()
    with torch.no_grad():
        want = eager(x)
        got = compiled(x)
    for a, b in zip(got, want):
        if dtype == 'fp32':
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        else:
            assert min_cosine(a, b) >= 0.999
