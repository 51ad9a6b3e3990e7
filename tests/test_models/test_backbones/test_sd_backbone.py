"""SDBackbone on a tiny random Stable Diffusion (tests/helpers/sd_tiny.py), on CPU.

References are diffusers' own: the full ``UNet2DConditionModel.forward`` with forward hooks
on the modules that define each block's feature, ``AutoencoderKL.encode`` and
``DDPMScheduler.add_noise`` for the noising; loading is checked with the network cut.
"""
import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('diffusers')
pytest.importorskip('transformers')

from helpers.sd_tiny import (SD_SCHEDULER, TINY_BLOCKS, TINY_UNET, TINY_VAE,  # noqa: E402
                             configs_only, to_original_layout)
from helpers.sd_tiny import no_network, tiny_sd  # noqa: E402,F401 (fixtures)
from mmdiffssl.models.backbones import SDBackbone  # noqa: E402
from mmdiffssl.models.noise import hashed_normal  # noqa: E402

ALL_BLOCKS = tuple(range(1, 10))

pytestmark = pytest.mark.usefixtures('one_thread')


def images(batch=2, size=64, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def backbone(folder, **kwargs):
    kwargs.setdefault('timesteps', (100, ))
    return SDBackbone(pretrained=folder, **kwargs).eval()


def hooked_reference(bb, latents, t, context):
    """Block features read by forward hooks during diffusers' full U-Net forward: the last
    ResNet/attention layer of each down/up block (before its resampler), the mid block."""
    unet, feats, handles = bb.unet, {}, []

    def keep(index):
        def hook(module, args, out):
            feats[index] = out[0] if isinstance(out, tuple) else getattr(out, 'sample', out)
        return hook
    for spec in bb.block_table:
        module = unet.get_submodule(spec.name)
        if spec.kind != 'middle':
            layers = getattr(module, 'attentions', None) or module.resnets
            module = layers[-1]
        handles.append(module.register_forward_hook(keep(spec.index)))
    try:
        with torch.no_grad():
            unet(latents, t, encoder_hidden_states=context)
    finally:
        for handle in handles:
            handle.remove()
    return feats


def test_block_table_names_and_pyramid(tiny_sd):
    bb = backbone(tiny_sd)
    specs = bb.block_table
    assert [(s.name, s.channels, s.stride, s.cross_attention) for s in specs] == TINY_BLOCKS
    assert [s.kind for s in specs] == ['input'] * 4 + ['middle'] + ['output'] * 4
    assert bb.blocks == (9, 8, 7, 6)                    # 'pyramid': up_blocks.3 .. 0
    assert bb.out_strides == [8, 16, 32, 64] and bb.out_channels == [16, 16, 32, 32]
    assert bb.size_divisibility == 64
    named = backbone(tiny_sd, blocks=('up_blocks.1', 'mid_block', 2))
    assert named.blocks == (7, 5, 2)
    out = named(images())
    assert [tuple(o.shape) for o in out] == [(2, 32, 2, 2), (2, 32, 1, 1), (2, 16, 4, 4)]


def test_features_equal_hooks_on_the_full_diffusers_forward(tiny_sd):
    # prune=False keeps the output layers, so the same U-Net runs diffusers' full forward
    bb = backbone(tiny_sd, blocks=ALL_BLOCKS, timesteps=(10, 500), noise='fixed', prune=False)
    from diffusers import DDPMScheduler
    scheduler = DDPMScheduler(**SD_SCHEDULER)
    x = images()
    with torch.no_grad():
        latents = bb.vae.encode(x).latent_dist.mean * 0.18215
        feats = bb.intermediates(x)
    noise = hashed_normal(latents.shape, 0)
    context = bb.prompt_embeds.expand(2, -1, -1)
    for i, t in enumerate((10, 500)):
        t_batch = torch.full((2, ), t)
        x_t = scheduler.add_noise(latents, noise, t_batch)
        ref = hooked_reference(bb, x_t, t_batch, context)
        assert sorted(ref) == list(ALL_BLOCKS)
        for block in ALL_BLOCKS:
            # batched timesteps round differently from one-at-a-time: relative tolerance
            scale = ref[block].abs().max().item()
            torch.testing.assert_close(feats[block][i], ref[block], rtol=1e-4, atol=1e-5 * scale,
                                       msg=f'block {block} at t={t}')
    fused = bb(x)
    assert fused[0].shape == (2, 2 * 16, 8, 8)
    torch.testing.assert_close(fused[0][:, :16], feats[1][0])


def test_stops_after_the_deepest_block_whose_later_weights_are_absent(tiny_sd):
    bb = backbone(tiny_sd, blocks=(3, ))
    names = [n for n, _ in bb.named_parameters()]
    assert any(n.startswith('unet.down_blocks.2.') for n in names)
    assert not any(n.startswith(('unet.mid_block', 'unet.up_blocks', 'unet.conv_out',
                                 'unet.down_blocks.3', 'unet.down_blocks.2.downsamplers'))
                   for n in names)
    bb_up = backbone(tiny_sd, blocks=(7, ))
    names = [n for n, _ in bb_up.named_parameters()]
    assert any(n.startswith('unet.up_blocks.1.') for n in names)
    assert not any(n.startswith(('unet.up_blocks.2', 'unet.up_blocks.1.upsamplers',
                                 'unet.conv_out', 'unet.conv_norm_out')) for n in names)
    full = backbone(tiny_sd, blocks=(7, ), prune=False)
    with torch.no_grad():
        torch.testing.assert_close(bb_up(images(1)), full(images(1)), rtol=0, atol=0)


def test_latents_are_the_scaled_vae_encoding(tiny_sd):
    bb = backbone(tiny_sd)
    assert bb.scaling_factor == pytest.approx(0.18215)
    x = images()
    with torch.no_grad():
        expected = bb.vae.encode(x).latent_dist.mean * 0.18215
        latents = bb.encode(x)
    assert latents.shape == (2, 4, 8, 8)
    torch.testing.assert_close(latents, expected, rtol=0, atol=0)
    # 'none' noise: the U-Net sees exactly these latents
    clean = backbone(tiny_sd, blocks=(9, ), noise='none', prune=False)
    context = clean.prompt_embeds.expand(2, -1, -1)
    ref = hooked_reference(clean, expected, torch.full((2, ), 100), context)[9]
    with torch.no_grad():
        torch.testing.assert_close(clean(x)[0], ref, rtol=1e-4, atol=1e-5)


def test_noise_modes(tiny_sd):
    x = images(3)
    fixed = backbone(tiny_sd, blocks=(9, ), noise='fixed')
    with torch.no_grad():
        alone = fixed(x[1:2])[0]
        in_batch = fixed(x)[0][1:2]
    torch.testing.assert_close(alone, in_batch, rtol=1e-5, atol=1e-5)

    ens = backbone(tiny_sd, blocks=(9, ), noise='ensemble', ensemble_size=2)
    with torch.no_grad():
        latents = ens.encode(x)
        draws = [ens.run_network(ens.schedule.q_sample(latents, 100, hashed_normal(
            latents.shape, 0, draw=d)), torch.full((3, ), 100), (9, ), None)[9]
            for d in range(2)]
        torch.testing.assert_close(ens(x)[0], torch.stack(draws).mean(0), rtol=1e-5,
                                   atol=1e-5)

    fresh = backbone(tiny_sd, blocks=(9, ), noise='fresh')
    with torch.no_grad():
        assert not torch.equal(fresh(x)[0], fresh(x)[0])


def test_per_image_timesteps_equal_rows_of_batched_timesteps(tiny_sd):
    bb = backbone(tiny_sd, blocks=(8, ), timesteps=(10, 700))
    x = images()
    with torch.no_grad():
        both = bb.intermediates(x)[8]
        per_image = bb.intermediates_at(x, torch.tensor([10, 700]))[8]
    torch.testing.assert_close(per_image[0], both[0][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(per_image[1], both[1][1], rtol=1e-5, atol=1e-5)


def test_text_conditioning(tiny_sd, tmp_path):
    from transformers import AutoTokenizer, CLIPTextModel
    tokenizer = AutoTokenizer.from_pretrained(osp.join(tiny_sd, 'tokenizer'))
    encoder = CLIPTextModel.from_pretrained(osp.join(tiny_sd, 'text_encoder'))
    ids = tokenizer('', padding='max_length', max_length=77, truncation=True,
                    return_tensors='pt').input_ids
    with torch.no_grad():
        null = encoder(ids)[0]
    bb = backbone(tiny_sd, blocks=(9, ))
    torch.testing.assert_close(bb.prompt_embeds, null)
    assert not any('text' in name for name, _ in bb.named_children())  # encoder dropped
    assert 'prompt_embeds' not in bb.state_dict()                       # recomputed

    prompt = backbone(tiny_sd, blocks=(9, ), text=dict(type='prompt', text='a cat'))
    assert prompt.prompt_embeds.shape == (1, 77, 16)
    assert not torch.allclose(prompt.prompt_embeds, null)

    path = str(tmp_path / 'embeds.pt')
    torch.save(prompt.prompt_embeds[0].clone(), path)
    from_file = backbone(tiny_sd, blocks=(9, ), text=dict(type='file', path=path))
    torch.testing.assert_close(from_file.prompt_embeds, prompt.prompt_embeds)
    x = images(1)
    with torch.no_grad():
        torch.testing.assert_close(from_file(x)[0], prompt(x)[0])

    # learned tokens train while the U-Net stays frozen
    learned = backbone(tiny_sd, blocks=(9, ), text=dict(type='learned', num_tokens=4)).train()
    assert learned.prompt_embeds.requires_grad and learned.prompt_embeds.shape == (1, 4, 16)
    learned(x)[0].square().mean().backward()
    assert learned.prompt_embeds.grad is not None and learned.prompt_embeds.grad.abs().sum() > 0
    assert all(p.grad is None for p in learned.unet.parameters())
    assert 'prompt_embeds' in learned.state_dict()
    init_null = backbone(tiny_sd, blocks=(9, ), text=dict(type='learned', init=dict(
        type='null')))
    torch.testing.assert_close(init_null.prompt_embeds.data, null)


def test_file_embeddings_need_no_text_encoder(tiny_sd, tmp_path, monkeypatch):
    import mmdiffssl.models.unets.diffusers_loading as loading
    path = str(tmp_path / 'embeds.safetensors')
    from safetensors.torch import save_file
    save_file({'prompt_embeds': torch.randn(1, 5, 16)}, path)
    monkeypatch.setattr(loading, 'import_transformers',
                        lambda: (_ for _ in ()).throw(AssertionError('transformers imported')))
    bb = backbone(tiny_sd, blocks=(9, ), text=dict(type='file', path=path))
    assert bb.prompt_embeds.shape == (1, 5, 16)
    with pytest.raises(AssertionError, match='transformers imported'):
        backbone(tiny_sd, blocks=(9, ))


def test_cross_attention_maps(tiny_sd):
    plain = backbone(tiny_sd, blocks=(9, 6), timesteps=(100, 400))
    maps = backbone(tiny_sd, blocks=(9, 6), timesteps=(100, 400), attention_maps=True,
                    attention_tokens=(0, 1, 2))
    assert maps.attention_map_blocks == (9, )     # up_blocks.0 has no cross-attention
    assert maps.out_channels == [2 * (16 + 3), 2 * 32]
    x = images()
    with torch.no_grad():
        a, b = plain.intermediates(x), maps.intermediates(x)
        out = maps(x)
    assert b[9].shape == (2, 2, 19, 8, 8)
    torch.testing.assert_close(b[9][:, :, :16], a[9])
    torch.testing.assert_close(b[6], a[6])
    assert [o.shape[1] for o in out] == maps.out_channels
    full = backbone(tiny_sd, blocks=(9, ), attention_maps=True)
    with torch.no_grad():
        probs = full.intermediates(x)[9][:, :, 16:]
    assert probs.shape[2] == 77
    torch.testing.assert_close(probs.sum(2), torch.ones_like(probs.sum(2)))
    assert (probs >= 0).all()
    with pytest.raises(ValueError, match='no cross-attention'):
        backbone(tiny_sd, blocks=(9, 6), attention_maps=(6, ))


def test_stride4_levels(tiny_sd):
    bb = backbone(tiny_sd, stride4='vae')
    assert bb.out_strides == [4, 8, 16, 32, 64] and bb.out_channels[0] == 16
    captured = []
    bb.vae.encoder.down_blocks[2].resnets[-1].register_forward_hook(
        lambda m, a, out: captured.append(out))
    x = images()
    with torch.no_grad():
        out = bb(x)
    assert [o.shape[-1] for o in out] == [16, 8, 4, 2, 1]
    torch.testing.assert_close(out[0], captured[0])

    up = backbone(tiny_sd, stride4='upsample')
    assert up.out_strides == [4, 8, 16, 32, 64] and up.out_channels[0] == up.out_channels[1]
    with torch.no_grad():
        out = up(x)
    torch.testing.assert_close(out[0], F.interpolate(out[1], scale_factor=2, mode='bilinear',
                                                     align_corners=False))


def test_offline_loading_folder_single_file_and_errors(tiny_sd, tmp_path, no_network):
    ref = backbone(tiny_sd, blocks=ALL_BLOCKS, prune=False)
    x = images(1)
    with torch.no_grad():
        expected = ref(x)
    config = configs_only(tiny_sd, str(tmp_path / 'configs'))
    assert not any(n.endswith('.safetensors') for n in _files(config))
    from safetensors.torch import save_file
    from transformers import CLIPTextModel
    encoder = CLIPTextModel.from_pretrained(osp.join(tiny_sd, 'text_encoder'))
    original = str(tmp_path / 'sd-original.safetensors')
    save_file(to_original_layout(ref.unet, ref.vae, encoder), original)
    diffusers_layout = str(tmp_path / 'sd-diffusers.safetensors')
    save_file({**{'unet.' + k: v for k, v in ref.unet.state_dict().items()},
               **{'vae.' + k: v for k, v in ref.vae.state_dict().items()},
               **{'text_encoder.' + k: v.contiguous() for k, v in encoder.state_dict().items()}},
              diffusers_layout)
    for path, text in ((original, dict(type='null')),
                       (diffusers_layout, dict(type='learned', init=dict(type='null')))):
        bb = SDBackbone(pretrained=path, config=config, blocks=ALL_BLOCKS, text=text,
                        timesteps=(100, )).eval()
        for module in ('unet', 'vae'):
            expected_state = getattr(ref, module).state_dict()
            for key, value in getattr(bb, module).state_dict().items():
                assert torch.equal(expected_state[key], value), (path, module, key)
        torch.testing.assert_close(bb.prompt_embeds.data, ref.prompt_embeds)
        with torch.no_grad():
            for a, b in zip(bb(x), expected):
                torch.testing.assert_close(a, b)

    missing = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match=r"(?s)nowhere.*unet/config.json.*single"):
        SDBackbone(pretrained=missing)
    with pytest.raises(ValueError, match='config='):
        SDBackbone(pretrained=original)
    with pytest.raises(FileNotFoundError, match='vae/config.json'):
        SDBackbone(pretrained=original, config=str(tmp_path))
    weightless = str(tmp_path / 'configs')
    with pytest.raises(FileNotFoundError, match='no diffusion_pytorch_model'):
        SDBackbone(pretrained=weightless)
    with pytest.raises(FileNotFoundError, match='nope.pt'):
        backbone(tiny_sd, text=dict(type='file', path=str(tmp_path / 'nope.pt')))
    unet_only = str(tmp_path / 'unet-vae.safetensors')
    save_file({k: v for k, v in to_original_layout(ref.unet, ref.vae).items()}, unet_only)
    with pytest.raises(FileNotFoundError, match='no text encoder weights'):
        SDBackbone(pretrained=unet_only, config=config)


def _files(folder):
    import os
    return [n for _, _, names in os.walk(folder) for n in names]


def test_frozen_semantics_and_small_run_checkpoints(tiny_sd):
    bb = backbone(tiny_sd, blocks=(9, ))
    bb.train()
    assert not bb.unet.training and not bb.vae.training
    assert not any(p.requires_grad for p in bb.unet.parameters())
    assert not any(p.requires_grad for p in bb.vae.parameters())
    out = bb(images(1))[0]
    assert not out.requires_grad
    state = bb.state_dict()
    assert not any(k.startswith(('unet.', 'vae.')) for k in state)
    fresh = backbone(tiny_sd, blocks=(9, ))
    fresh.load_state_dict(state, strict=True)


@pytest.mark.parametrize('with_cp', [False, True])
def test_fine_tuning_trains_the_used_prefix_only(tiny_sd, with_cp):
    bb = backbone(tiny_sd, blocks=(7, ), frozen=False, with_cp=with_cp, noise='none').train()
    assert bb.unet.training and not bb.vae.training
    frozen = {n for n, p in bb.unet.named_parameters() if not p.requires_grad}
    assert not frozen   # what never runs is not built (later blocks, the upsampler, conv_out)
    names = {n for n, _ in bb.unet.named_parameters()}
    assert not any(n.startswith(('up_blocks.2.', 'up_blocks.1.upsamplers.', 'conv_out.'))
                   for n in names)
    assert any(n.startswith('up_blocks.1.resnets') for n in names)
    bb(images(1))[0].square().mean().backward()
    assert all(p.grad is not None for p in bb.unet.parameters() if p.requires_grad)
    assert all(p.grad is None for p in bb.vae.parameters())
    assert any(k.startswith('unet.') for k in bb.state_dict())      # trained: kept
    assert not any(k.startswith('vae.') for k in bb.state_dict())   # reloaded


def test_with_cp_gradients_match(tiny_sd):
    grads = []
    for with_cp in (False, True):
        bb = backbone(tiny_sd, blocks=(8, ), frozen=False, with_cp=with_cp, noise='none')
        bb.train()
        bb(images(1))[0].square().mean().backward()
        grads.append({n: p.grad for n, p in bb.unet.named_parameters() if p.requires_grad})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)


def test_sdpa_attention_everywhere(tiny_sd):
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0
    bb = backbone(tiny_sd)
    layers = [m for m in list(bb.unet.modules()) + list(bb.vae.modules())
              if isinstance(m, Attention)]
    assert len(layers) > 10
    assert all(isinstance(m.processor, AttnProcessor2_0) for m in layers)


def test_bf16_autocast_close_to_fp32(tiny_sd):
    x = images(1)
    fp32 = backbone(tiny_sd, blocks=(9, 7))
    bf16 = backbone(tiny_sd, blocks=(9, 7), dtype='bf16')
    with torch.no_grad():
        for a, b in zip(fp32(x), bf16(x)):
            assert b.dtype == torch.float32
            assert F.cosine_similarity(a.flatten(1), b.flatten(1)).min() > 0.99


def test_random_configs_without_weights():
    bb = SDBackbone(unet_config=TINY_UNET, vae_config=TINY_VAE, blocks='pyramid',
                    text=dict(type='learned', num_tokens=2), timesteps=(5, )).eval()
    assert any(k.startswith('unet.') for k in bb.state_dict())   # nothing to reload from
    with torch.no_grad():
        assert [o.shape[-1] for o in bb(images(1))] == [8, 4, 2, 1]
    with pytest.raises(ValueError, match="needs the CLIP text encoder"):
        SDBackbone(unet_config=TINY_UNET, vae_config=TINY_VAE)


@pytest.mark.parametrize('kwargs, match', [
    (dict(blocks=(10, )), r'block 10 .*1\.\.9'),
    (dict(blocks=(0, )), 'block 0 '),
    (dict(blocks=('up_blocks.7', )), "up_blocks.7"),
    (dict(blocks='everything'), 'everything'),
    (dict(pyramid_strides=(4, 8)), 'stride 4'),
    (dict(timesteps=(1000, )), r'timestep 1000 .*\[0, 1000\)'),
    (dict(noise='sometimes'), 'sometimes'),
    (dict(fuse_timesteps='max'), 'max'),
    (dict(dtype='fp8'), 'fp8'),
    (dict(text=dict(type='caption')), 'caption'),
    (dict(text=dict(type='learned')), 'num_tokens'),
    (dict(stride4='deconv'), 'deconv'),
    (dict(attention_tokens=(77, )), r'77.*\[0, 77\)'),
    (dict(scheduler=dict(beta_schedule='sigmoid')), 'sigmoid'),
])
def test_bad_arguments(tiny_sd, kwargs, match):
    with pytest.raises(ValueError, match=match):
        backbone(tiny_sd, **kwargs)


def test_bad_inputs(tiny_sd):
    bb = backbone(tiny_sd, blocks=(9, ))
    with pytest.raises(ValueError, match=r'48x64 is not divisible by 64'):
        bb(images(1)[:, :, :48])
    with pytest.raises(ValueError, match='RGB'):
        bb(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match='injections'):
        bb.intermediates(images(1), injections={9: torch.zeros(1)})


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_builds_under_every_scope(tiny_sd, scope):
    import importlib
    pytest.importorskip(scope)
    registry = importlib.import_module(f'{scope}.registry')
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        bb = registry.MODELS.build(dict(type='SDBackbone', pretrained=tiny_sd, blocks=(9, ),
                                        timesteps=(100, )))
    assert isinstance(bb, SDBackbone)
    assert copy.deepcopy(bb).blocks == (9, )
