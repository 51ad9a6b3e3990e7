"""ADMBackbone: shapes, noise modes, frozen semantics, checkpoints, scopes and bad input."""
import copy

import pytest
import torch

from mmdiffssl.models.backbones import ADMBackbone
from mmdiffssl.models.backbones.base import shapes_only
from mmdiffssl.models.noise import hashed_normal
from mmdiffssl.models.unets import adm_flags_from, build_adm_unet

# A small arch with the adm-256-uncond structure (6 levels, attention at 32,16,8, 2 heads).
SMALL = dict(preset='adm-256-uncond', num_channels=32, num_head_channels=16,
             channel_mult='1,1,2,2,4,4')
TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult='1,2,2',
            attention_resolutions='16,8', num_head_channels=16, learn_sigma=False)


def tiny_backbone(**kwargs):
    kwargs.setdefault('arch', TINY)
    kwargs.setdefault('random_init', 'redraw')
    kwargs.setdefault('blocks', (9, ))
    return ADMBackbone(**kwargs)


def images(batch=2, size=32, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_paper_block_table_and_pyramid():
    with torch.device('meta'):
        unet = build_adm_unet(adm_flags_from('adm-256-uncond'))
    specs = unet.block_specs()
    assert len(specs) == 37
    assert [s.kind for s in specs].count('input') == 18 and specs[18].kind == 'middle'
    assert (specs[23].channels, specs[23].stride) == (1024, 16)   # block 24: 1024 x 16 x 16
    with shapes_only():
        bb = ADMBackbone(arch='adm-256-uncond', blocks='pyramid')
    assert bb.blocks == bb.block_table.pyramid((4, 8, 16, 32)) == (30, 27, 24, 21)
    assert [(r.name, r.channels, r.stride) for r in bb.block_table if r.index in (19, 24)] == [
        ('middle_block', 1024, 32), ('output_blocks.4', 1024, 16)]


@pytest.mark.parametrize('fuse', ['concat', 'mean'])
def test_output_shapes_match_output_shape(fuse):
    bb = tiny_backbone(blocks=(8, 3, 12), timesteps=(10, 100), fuse_timesteps=fuse).eval()
    out = bb(images(size=32))
    assert isinstance(out, tuple) and len(out) == 3
    for feat, spec in zip(out, bb.output_shape()):
        assert feat.shape == (2, spec.channels, 32 // spec.stride, 32 // spec.stride)
    assert bb.out_channels[0] == (128 if fuse == 'concat' else 64)


def test_small_paper_arch_block24_and_pyramid():
    bb = ADMBackbone(arch=SMALL, blocks='pyramid', timesteps=(150, ), random_init='redraw')
    assert bb.blocks == (30, 27, 24, 21)
    out = bb(images(1, 64))
    assert [tuple(o.shape[2:]) for o in out] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert bb.out_strides == [4, 8, 16, 32]


def test_features_equal_reference_q_sample_and_unet():
    """The backbone = q_sample (guided-diffusion's) + the U-Net's block output."""
    gd = pytest.importorskip('guided_diffusion.gaussian_diffusion')
    from guided_diffusion.script_util import create_gaussian_diffusion
    bb = tiny_backbone(blocks=(9, ), timesteps=(300, ), noise='fixed').eval()
    x = images(2)
    diffusion = create_gaussian_diffusion(steps=1000, noise_schedule='linear')
    noise = hashed_normal(x.shape, 0)
    t = torch.full((2, ), 300)
    x_t = diffusion.q_sample(x, t, noise=noise)
    ref = bb.unet.forward_intermediates(x_t, t, (9, ))[9]
    assert isinstance(diffusion, gd.GaussianDiffusion)
    torch.testing.assert_close(bb(x)[0], ref, rtol=1e-5, atol=1e-5)


def test_fixed_noise_independent_of_batch_position_and_padding():
    bb = tiny_backbone(blocks=(9, ), noise='fixed').eval()
    x = images(3)
    alone = bb(x[1:2])[0]
    in_batch = bb(x)[0][1:2]
    torch.testing.assert_close(alone, in_batch, rtol=0, atol=1e-5)
    # Padding at the bottom/right leaves the noise over the image unchanged.
    padded = hashed_normal((3, 3, 64, 48), 0)
    torch.testing.assert_close(padded[:, :, :32, :32], hashed_normal((3, 3, 32, 32), 0),
                               rtol=0, atol=0)
    # Different image keys draw different fields.
    keyed = hashed_normal((2, 3, 8, 8), 0, keys=torch.tensor([0, 1]))
    assert not torch.allclose(keyed[0], keyed[1])


def test_noise_modes():
    x = images(2)
    none = tiny_backbone(blocks=(9, ), noise='none').eval()
    ref = none.unet.forward_intermediates(x, torch.full((2, ), 150), (9, ))[9]
    torch.testing.assert_close(none(x)[0], ref)

    ens = tiny_backbone(blocks=(9, ), noise='ensemble', ensemble_size=3).eval()
    draws = []
    for draw in range(3):
        x_t = ens.schedule.q_sample(x, 150, hashed_normal(x.shape, 0, draw=draw))
        draws.append(ens.unet.forward_intermediates(x_t, torch.full((2, ), 150), (9, ))[9])
    torch.testing.assert_close(ens(x)[0], torch.stack(draws).mean(0), rtol=1e-5, atol=1e-5)

    fresh = tiny_backbone(blocks=(9, ), noise='fresh').eval()
    assert not torch.equal(fresh(x)[0], fresh(x)[0])


def test_fresh_noise_state_resumes():
    bb = tiny_backbone(blocks=(9, ), noise='fresh').train()
    x = images(1)
    bb(x)
    state = copy.deepcopy(bb.state_dict())
    expected = bb(x)[0]
    other = tiny_backbone(blocks=(9, ), noise='fresh').train()
    other.load_state_dict(state)
    torch.testing.assert_close(other(x)[0], expected, rtol=0, atol=0)


def test_fresh_noise_evaluation_does_not_shift_training_draws():
    x = images(1)
    straight = tiny_backbone(blocks=(9, ), noise='fresh').train()
    straight(x)
    expected = straight(x)[0]

    with_eval = tiny_backbone(blocks=(9, ), noise='fresh').train()
    with_eval(x)
    first_eval = with_eval.eval()(x)[0]
    second_eval = with_eval.eval()(x)[0]   # re-entering eval repeats the eval draws
    torch.testing.assert_close(second_eval, first_eval, rtol=0, atol=0)
    torch.testing.assert_close(with_eval.train()(x)[0], expected, rtol=0, atol=0)


def test_timesteps_batched_equal_separate():
    bb = tiny_backbone(blocks=(9, 4), timesteps=(10, 500)).eval()
    x = images(2)
    both = bb.intermediates(x)
    for i, t in enumerate((10, 500)):
        one = bb.intermediates(x, timesteps=(t, ))
        for b in (9, 4):
            torch.testing.assert_close(both[b][i], one[b][0], rtol=1e-5, atol=1e-5)


def test_per_image_timesteps_equal_rows_of_batched_timesteps():
    """intermediates_at(x, t) with t = (10, 500) is row i of intermediates at t[i]."""
    bb = tiny_backbone(blocks=(9, 4), timesteps=(10, 500)).eval()
    x = images(2)
    both = bb.intermediates(x)
    per_image = bb.intermediates_at(x, torch.tensor([10, 500]))
    for b in (9, 4):
        assert per_image[b].shape == both[b].shape[1:]
        torch.testing.assert_close(per_image[b][0], both[b][0][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(per_image[b][1], both[b][1][1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='1000'):
        bb.intermediates_at(x, torch.tensor([10, 1000]))
    with pytest.raises(ValueError, match='one per image'):
        bb.intermediates_at(x, torch.tensor([10]))


def test_injection_of_zeros_changes_nothing_and_grad_flows():
    bb = tiny_backbone(blocks=(9, )).eval()
    x = images(2)
    plain = bb.intermediates(x)[9]
    spec = bb.block_table.row(2)
    delta = torch.zeros(2, spec.channels, 32 // spec.stride, 32 // spec.stride,
                        requires_grad=True)
    injected = bb.intermediates(x, injections={2: delta})[9]
    torch.testing.assert_close(injected, plain, rtol=0, atol=1e-6)
    injected.sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0
    assert all(p.grad is None for p in bb.unet.parameters())


def test_frozen_builds_no_graph_and_stays_eval():
    bb = tiny_backbone(blocks=(9, ))
    bb.train()
    assert not bb.unet.training
    assert all(not p.requires_grad for p in bb.unet.parameters())
    out = bb(images(1))[0]
    assert not out.requires_grad and out.grad_fn is None


def test_trainable_from_and_checkpointing_match():
    x = images(2)
    grads = []
    for with_cp in (False, True):
        bb = tiny_backbone(blocks=(9, ), frozen=False, trainable_from=4, with_cp=with_cp,
                           noise='none')
        bb.train()
        bb(x)[0].square().mean().backward()
        grads.append({n: p.grad for n, p in bb.unet.named_parameters() if p.requires_grad})
        frozen = [n for n, p in bb.unet.named_parameters() if not p.requires_grad]
        assert any(n.startswith('input_blocks.2.') for n in frozen)
        assert not any(n.startswith('input_blocks.3.') for n in frozen)
        assert any(n.startswith('time_embed.') for n in frozen)
        # Blocks after the deepest output (9: output_blocks.1) and `out` are not built, and
        # every parameter that trains gets a gradient (nothing unused under DDP).
        names = [n for n, _ in bb.unet.named_parameters()]
        assert not any(n.startswith(('output_blocks.2.', 'out.')) for n in names)
        assert not any(n.startswith('output_blocks.1.') for n in frozen)
        assert all(p.grad is not None for p in bb.unet.parameters() if p.requires_grad)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('suffix', ['.pt', '.pth', '.safetensors'])
def test_checkpoint_formats_load_exactly(tmp_path, suffix):
    src = tiny_backbone(prune=False)
    path = str(tmp_path / f'unet{suffix}')
    if suffix == '.safetensors':
        from safetensors.torch import save_file
        save_file(src.unet.state_dict(), path)
    else:
        torch.save(src.unet.state_dict(), path)
    bb = ADMBackbone(arch=TINY, blocks=(9, ), checkpoint=path)
    expected = src.unet.state_dict()
    for key, value in bb.unet.state_dict().items():     # the kept blocks, loaded exactly
        assert torch.equal(expected[key], value), key
    # A run's checkpoint of a frozen backbone does not store the U-Net again, and loads back.
    assert not any(k.startswith('unet.') for k in bb.state_dict())
    fresh = ADMBackbone(arch=TINY, blocks=(9, ), checkpoint=path)
    fresh.load_state_dict(bb.state_dict(), strict=True)


def test_checkpoint_that_does_not_fit(tmp_path):
    path = str(tmp_path / 'other.pt')
    torch.save(tiny_backbone(arch=dict(TINY, num_channels=64), prune=False).unet.state_dict(),
               path)
    with pytest.raises(ValueError, match='shape conflicts'):
        ADMBackbone(arch=TINY, blocks=(9, ), checkpoint=path)
    torch.save({'foo': torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r'(?s)missing keys .*unexpected keys \(1\): foo'):
        ADMBackbone(arch=TINY, blocks=(9, ), checkpoint=path)
    with pytest.raises(FileNotFoundError, match='nope.pt'):
        ADMBackbone(arch=TINY, blocks=(9, ), checkpoint=str(tmp_path / 'nope.pt'))


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='adm-999'), 'adm-999'),
    (dict(blocks=(14, )), 'block 14 .*1..13'),
    (dict(blocks=(0, )), 'block 0 '),
    (dict(timesteps=(1000, )), r'timestep 1000 .*\[0, 1000\)'),
    (dict(timesteps=(-1, )), 'timestep -1'),
    (dict(noise='sometimes'), 'sometimes'),
    (dict(fuse_timesteps='max'), 'max'),
    (dict(arch=dict(TINY, class_cond=True)), 'class_label'),
    (dict(arch=dict(TINY, class_cond=True), class_label=1000), r'class_label=1000 .*\[0, 1000\)'),
    (dict(blocks='everything'), 'everything'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, KeyError), match=match):
        tiny_backbone(**kwargs)


def test_bad_inputs():
    bb = tiny_backbone(blocks=(9, )).eval()
    with pytest.raises(ValueError, match='30'):
        bb(images(1, 30))
    with pytest.raises(ValueError, match='channels'):
        bb(torch.zeros(1, 1, 32, 32))


def test_class_conditional_uses_class_label():
    bb = tiny_backbone(arch=dict(TINY, class_cond=True), class_label=3, blocks=(9, )).eval()
    x = images(2)
    t = torch.full((2, ), 150)
    x_t = bb.schedule.q_sample(x, 150, hashed_normal(x.shape, 0))
    ref = bb.unet.forward_intermediates(x_t, t, (9, ), y=torch.full((2, ), 3))[9]
    torch.testing.assert_close(bb(x)[0], ref)


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_builds_under_every_scope(scope):
    import importlib
    pytest.importorskip(scope)
    registry = importlib.import_module(f'{scope}.registry')
    cfg = dict(type='ADMBackbone', arch=TINY, blocks=(9, ), timesteps=(150, ))
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        bb = registry.MODELS.build(cfg)
    assert isinstance(bb, ADMBackbone)
    assert bb(images(1))[0].shape == (1, 64, 16, 16)


def test_run_checkpoint_refuses_other_backbone_weights(tmp_path):
    """A run checkpoint records the frozen backbone's weights fingerprint: loading it into a
    backbone built from another U-Net file raises (its head read other features)."""
    paths = []
    for seed in (0, 1):
        path = str(tmp_path / f'unet{seed}.pt')
        torch.save(tiny_backbone(prune=False, init_seed=seed).unet.state_dict(), path)
        paths.append(path)
    trained = ADMBackbone(arch=TINY, blocks=(9, ), checkpoint=paths[0])
    state = trained.state_dict()
    assert list(state) == ['_extra_state'] or '_extra_state' in state
    ADMBackbone(arch=TINY, blocks=(9, ), checkpoint=paths[0]).load_state_dict(state)
    with pytest.raises(ValueError, match=r'(?s)trained on ADMBackbone weights .*file:.*'
                       r'allow_other_weights=True'):
        ADMBackbone(arch=TINY, blocks=(9, ), checkpoint=paths[1]).load_state_dict(state)
    ADMBackbone(arch=TINY, blocks=(9, ), checkpoint=paths[1],
                allow_other_weights=True).load_state_dict(state)
    # the record survives torch.save / weights-only torch.load
    torch.save(state, tmp_path / 'run.pth')
    loaded = torch.load(tmp_path / 'run.pth', weights_only=True)
    with pytest.raises(ValueError, match='allow_other_weights'):
        ADMBackbone(arch=TINY, blocks=(9, ), checkpoint=paths[1]).load_state_dict(loaded)
