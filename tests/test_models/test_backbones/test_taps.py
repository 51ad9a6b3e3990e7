"""Taps inside blocks: module outputs equal forward hooks on the reference forward, attention
q/k/v/maps equal an explicit computation, early stop, errors, frozen semantics, caches."""
import os.path as osp

import pytest
import torch

from mmdiffssl.models.backbones import ADMBackbone

pytestmark = pytest.mark.usefixtures('one_thread')

TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult='1,2,2',
            attention_resolutions='16,8', num_head_channels=16, learn_sigma=False)
RES_CONV = 'middle_block.2.out_layers.3'     # RepFusion's ImageNet-64 teacher tensor
ATTN = 'middle_block.1'                      # an AttentionBlock (4 heads of 16)


def images(size=32, batch=2, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def adm(**kwargs):
    kwargs.setdefault('blocks', (3, ))
    kwargs.setdefault('timesteps', (10, 300))
    return ADMBackbone(arch=TINY, random_init='redraw', noise='fixed', **kwargs).eval()


def test_module_tap_equals_a_hook_on_the_unet_forward():
    bb = adm(taps=(RES_CONV, ))
    assert bb.run_until == 7 and bb.output_names() == [3, RES_CONV]
    x = images()
    with torch.no_grad():
        feats = bb.intermediates(x)
    ref = adm(blocks=(13, ), prune=False)            # same weights, whole U-Net
    seen = []
    ref.unet.get_submodule(RES_CONV).register_forward_hook(lambda m, a, out: seen.append(out))
    with torch.no_grad():
        for i, t in enumerate((10, 300)):
            x_t = ref.schedule.q_sample(x, t, ref.noise.sample(x.shape, x.device, x.dtype))
            ref.unet(x_t, torch.full((2, ), t))
            # (both timesteps in one batch round differently from one at a time)
            torch.testing.assert_close(feats[RES_CONV][i], seen[-1], rtol=1e-4, atol=1e-5)
    shape = bb.output_shape()[1]
    assert (shape.channels, shape.stride) == (2 * 64, 4)          # 2 timesteps concatenated
    out = bb(x)
    assert out[1].shape == (2, 128, 8, 8)


def test_diffusers_mid_block_conv_tap_equals_a_hook_on_the_full_forward(tmp_path):
    pytest.importorskip('diffusers')
    from diffusers import DDPMScheduler, UNet2DModel

    from helpers.sd_tiny import TINY_DDPM, perturb_
    from mmdiffssl.models.backbones import DiffusersUNetBackbone
    from mmdiffssl.models.noise import hashed_normal
    torch.manual_seed(0)
    folder = str(tmp_path / 'ddpm')
    perturb_(UNet2DModel(**TINY_DDPM), scale=0.05).save_pretrained(osp.join(folder, 'unet'))
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(osp.join(folder, 'scheduler'))
    tap = 'mid_block.resnets.1.conv2'                # RepFusion's CIFAR-10 teacher tensor
    bb = DiffusersUNetBackbone(pretrained=folder, blocks=(1, ), taps=(tap, ),
                               timesteps=(100, )).eval()
    assert bb.run_until == 4                          # the mid block; no up block is built
    assert not any(n.startswith('unet.up_blocks') for n, _ in bb.named_parameters())
    x = images(16)
    with torch.no_grad():
        ours = bb.intermediates(x)[tap][0]
    full = DiffusersUNetBackbone(pretrained=folder, prune=False).eval()
    seen = []
    full.unet.get_submodule(tap).register_forward_hook(lambda m, a, out: seen.append(out))
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    t = torch.full((2, ), 100)
    with torch.no_grad():
        full.unet(scheduler.add_noise(x, hashed_normal(x.shape, 0), t), t)
    torch.testing.assert_close(ours, seen[0], rtol=1e-5, atol=1e-5)


def test_attention_taps_are_q_k_v_and_the_explicit_softmax():
    parts = [f'{ATTN}:{p}' for p in ('q', 'k', 'v', 'attn')]
    bb = adm(taps=parts, timesteps=(50, ))
    x = images()
    inputs = []
    bb.unet.get_submodule(ATTN).register_forward_pre_hook(lambda m, a: inputs.append(a[0]))
    with torch.no_grad():
        feats = {k: v[0] for k, v in bb.intermediates(x).items()}
    block = bb.unet.get_submodule(ATTN)
    h = inputs[0]
    n, c, height, width = h.shape
    qkv = block.qkv(block.norm(h.reshape(n, c, -1)))             # legacy order: (heads, 3, d)
    q, k, v = qkv.reshape(n, 4, 3, 16, -1).unbind(2)              # (N, heads, d, T)
    for name, ref in (('q', q), ('k', k), ('v', v)):
        torch.testing.assert_close(feats[f'{ATTN}:{name}'],
                                   ref.reshape(n, 64, height, width), rtol=1e-5, atol=1e-6)
    weights = torch.einsum('nhdt,nhds->nhts', q, k) / 16 ** 0.5   # (N, heads, T_q, T_k)
    expected = weights.softmax(-1).permute(0, 1, 3, 2).reshape(n, 4 * 64, height, width)
    attn = feats[f'{ATTN}:attn']
    torch.testing.assert_close(attn, expected, rtol=1e-5, atol=1e-6)
    rows = attn.unflatten(1, (4, 64)).sum(2)                      # over keys
    torch.testing.assert_close(rows, torch.ones_like(rows))
    assert [s.channels for s in bb.output_shape()[1:]] == [64, 64, 64, 4 * 64]


def test_early_stop_after_the_block_holding_the_deepest_tap():
    bb = adm(taps=('input_blocks.3.0.in_layers.2', ), prune=False)   # block 4
    ran = []
    for index in (4, 5):
        bb.unet.input_blocks[index - 1].register_forward_hook(
            lambda *a, i=index: ran.append(i))
    bb(images())
    assert ran == [4]
    assert adm(taps=('input_blocks.3.0.in_layers.2', )).run_until == 4


def test_bad_taps_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"no module 'middle_block\.7'.*block 7 \(middle_block\)"
                       r'.*middle_block\.2\.out_layers\.3'):
        adm(taps=('middle_block.7', ))
    with pytest.raises(ValueError, match="tap paths start with a block's module name"):
        adm(taps=('unet.middle_block', ))
    with pytest.raises(ValueError, match='not an attention layer'):
        adm(taps=(f'{RES_CONV}:attn', ))
    with pytest.raises(ValueError, match="part 'x' is not one of"):
        adm(taps=(f'{ATTN}:x', ))
    with pytest.raises(ValueError, match='did not run'):
        adm(taps=('middle_block.0.in_layers', )).output_shape()
    with pytest.raises(ValueError, match='compiled'):
        adm(taps=(RES_CONV, ), compile=True)


def test_frozen_taps_build_no_graph():
    bb = adm(taps=(RES_CONV, f'{ATTN}:attn'))
    with torch.enable_grad():
        out = bb(images())
    assert not any(o.requires_grad for o in out)
    tuned = adm(taps=(RES_CONV, ), frozen=False).train()
    assert tuned(images())[1].requires_grad


def test_cache_key_and_feature_cache_cover_taps(tmp_path):
    from mmdiffssl.datasets.feature_cache import cache_layout, layout_of
    plain, tapped = adm(), adm(taps=(RES_CONV, ))
    assert plain.cache_key() != tapped.cache_key()
    cfg = dict(type='ADMBackbone', arch=TINY, random_init='redraw', blocks=(3, ),
               timesteps=(10, 300), taps=(RES_CONV, ))
    assert cache_layout(cfg, pool=2) == layout_of(tapped, pool=2) == [
        (3, 64, 2, 2), (RES_CONV, 128, 2, 2)]


def test_print_blocks_lists_the_tappable_modules():
    from mmdiffssl.apis.blocks import tap_lines
    lines = '\n'.join(tap_lines(dict(type='ADMBackbone', arch=TINY), 7))
    assert RES_CONV in lines and '(1, 64, 8, 8)' in lines
    assert f'{ATTN} ' in lines and ':attn' in lines
