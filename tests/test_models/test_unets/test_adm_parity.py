"""ADMUNet against OpenAI's guided-diffusion ``UNetModel``, plus its block API.

The reference comes from ``guided-diffusion-sdk`` (OpenAI's original
``guided_diffusion`` package). Test models keep each preset's structure but
are narrowed, and all their parameters are re-drawn so that no computation
hides behind a zero-initialised layer.
"""
import inspect
import warnings

import pytest
import torch
import torch.utils.checkpoint

with warnings.catch_warnings():  # its torch.cuda.amp decorators are deprecated
    warnings.simplefilter('ignore', FutureWarning)
    from guided_diffusion.script_util import (create_model,
                                              model_and_diffusion_defaults)

from mmdiffssl.models.unets import (ADM_CHECKPOINT_NAMES, ADM_PRESETS,
                                    GUIDED_DIFFUSION_DEFAULTS,
                                    BlockSpec, adm_flags_from, build_adm_unet)
from mmdiffssl.models.unets import adm as adm_module
from mmdiffssl.utils.weight_init import redraw_parameters_

#: Allowed max|ours - ref| relative to max(1, max|ref|), per block.
TOL = 1e-5
CREATE_MODEL_ARGS = tuple(inspect.signature(create_model).parameters)


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """The models are tiny; extra threads only cost synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------
# helpers
def small_flags(arch, **overrides):
    """``arch``'s flags with the width shrunk and the structure kept.

    ``num_channels`` becomes 32 (64 at 512px, whose first level is 0.5x
    wide); fixed head widths become 16 channels, so every attention layer
    has at least 2 heads.
    """
    flags = adm_flags_from(arch)
    flags.update(num_channels=64 if flags['image_size'] == 512 else 32,
                 use_fp16=False)
    if flags['num_head_channels'] != -1:
        flags['num_head_channels'] = 16
    flags.update(overrides)
    return flags


def create_reference(flags):
    return create_model(**{k: flags[k] for k in CREATE_MODEL_ARGS})


def make_pair(flags, seed=0):
    """Reference with re-drawn parameters, and ADMUNet loaded from it."""
    ref = create_reference(flags).eval()
    redraw_parameters_(ref, torch.Generator().manual_seed(seed))
    ours = build_adm_unet(flags).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def make_inputs(model, seed=1):
    """Batch of 2 at twice the smallest valid size, so that even the
    deepest attention layer sees 2x2 positions."""
    generator = torch.Generator().manual_seed(seed)
    size = 2 * model.size_divisor
    x = torch.randn(2, model.in_channels, size, size, generator=generator)
    t = torch.tensor([10, 900])
    y = None if model.num_classes is None else torch.tensor([3, 997])
    return x, t, y


def reference_blocks(ref):
    return [*ref.input_blocks, ref.middle_block, *ref.output_blocks]


@torch.no_grad()
def reference_features(ref, x, t, y, injections=None):
    """Every block output of the reference (1-based, final output last),
    with ``injections`` added to block outputs by forward hooks."""
    injections = injections or {}
    blocks = reference_blocks(ref)
    features = {}
    handles = []
    for index, block in enumerate(blocks, start=1):

        def hook(module, args, output, index=index):
            if index in injections:
                output = output + injections[index]
            features[index] = output
            return output

        handles.append(block.register_forward_hook(hook))
    try:
        features[len(blocks) + 1] = ref(x, t, y)
    finally:
        for handle in handles:
            handle.remove()
    return features


@torch.no_grad()
def all_features(ours, x, t, y, **kwargs):
    return ours.forward_intermediates(x, t, range(1, ours.out_index + 1),
                                      y=y, **kwargs)


def parity_error(features, ref_features):
    """max over blocks of max|diff| / max(1, max|ref|)."""
    assert features.keys() == ref_features.keys()
    return max(((features[i] - ref_features[i]).abs().max()
                / ref_features[i].abs().max().clamp(min=1)).item()
               for i in ref_features)


def pair_error(ref, ours):
    x, t, y = make_inputs(ours)
    return parity_error(all_features(ours, x, t, y),
                        reference_features(ref, x, t, y))


def attention_blocks(model):
    return [m for m in model.modules()
            if isinstance(m, adm_module.AttentionBlock)]


# ----------------------------------------------------------------------------
# numerical parity
@pytest.mark.parametrize('preset', sorted(ADM_PRESETS))
def test_preset_parity(preset):
    ref, ours = make_pair(small_flags(preset))
    assert all(block.num_heads >= 2 for block in attention_blocks(ours))
    assert pair_error(ref, ours) <= TOL


@pytest.mark.parametrize('new_order', [False, True],
                         ids=['legacy-order', 'new-order'])
@pytest.mark.parametrize('heads', [
    dict(num_head_channels=16),
    dict(num_heads=4, num_heads_upsample=2),
], ids=['head-channels', 'num-heads'])
def test_attention_order_parity(new_order, heads):
    flags = small_flags('adm-64-cond', use_new_attention_order=new_order,
                        num_res_blocks=1, **heads)
    ref, ours = make_pair(flags)
    assert {b.new_order for b in attention_blocks(ours)} == {new_order}
    assert all(block.num_heads >= 2 for block in attention_blocks(ours))
    assert pair_error(ref, ours) <= TOL


@pytest.mark.parametrize('overrides', [
    dict(resblock_updown=False, use_scale_shift_norm=False),
    dict(resblock_updown=False, channel_mult='1,2,2', class_cond=False,
         learn_sigma=False, attention_resolutions='16'),
], ids=['conv-resample-additive-emb', 'custom-channel-mult'])
def test_variant_parity(overrides):
    ref, ours = make_pair(small_flags('adm-64-cond', num_res_blocks=1,
                                      **overrides))
    assert pair_error(ref, ours) <= TOL


# ----------------------------------------------------------------------------
# mutants: the parity check must notice deliberate breakage
def test_mutant_swapped_scale_shift_fails(monkeypatch):
    ref, ours = make_pair(small_flags('adm-256-uncond', num_res_blocks=1))

    def swapped(emb_out):
        scale, shift = emb_out.chunk(2, dim=1)
        return shift, scale

    monkeypatch.setattr(adm_module, '_split_scale_shift', swapped)
    assert pair_error(ref, ours) > TOL


@pytest.mark.parametrize('ref_new_order', [False, True],
                         ids=['legacy-ref', 'new-order-ref'])
def test_mutant_wrong_attention_order_fails(ref_new_order):
    flags = small_flags('adm-64-cond', num_res_blocks=1,
                        use_new_attention_order=ref_new_order)
    ref, _ = make_pair(flags)
    wrong = build_adm_unet(
        dict(flags, use_new_attention_order=not ref_new_order)).eval()
    wrong.load_state_dict(ref.state_dict(), strict=True)
    assert pair_error(ref, wrong) > TOL


# ----------------------------------------------------------------------------
# full-size layout (meta device: no memory, no compute)
@pytest.mark.parametrize('preset', sorted(ADM_PRESETS))
def test_full_size_state_dict_layout(preset):
    flags = adm_flags_from(dict(preset=preset, use_fp16=False))
    with torch.device('meta'):
        ref = create_reference(flags)
        ours = build_adm_unet(preset)
    assert ({k: v.shape for k, v in ours.state_dict().items()}
            == {k: v.shape for k, v in ref.state_dict().items()})


def test_adm_256_uncond_parameter_count():
    with torch.device('meta'):
        model = build_adm_unet('adm-256-uncond')
    count = sum(p.numel() for p in model.parameters())
    assert count == pytest.approx(552.8e6, rel=1e-3)


# ----------------------------------------------------------------------------
# presets and flags
def test_presets_have_checkpoint_names():
    assert ADM_CHECKPOINT_NAMES.keys() == ADM_PRESETS.keys()


def test_flag_defaults_are_guided_diffusions():
    assert GUIDED_DIFFUSION_DEFAULTS == model_and_diffusion_defaults()
    assert adm_flags_from({}) == model_and_diffusion_defaults()


def test_flags_from_preset_with_overrides():
    flags = adm_flags_from(dict(preset='adm-256-uncond', num_channels=64))
    assert flags['num_channels'] == 64
    assert flags['num_head_channels'] == 64
    assert flags['class_cond'] is False
    assert adm_flags_from('adm-64-cond')['noise_schedule'] == 'cosine'
    assert ADM_PRESETS['adm-256-uncond']['num_channels'] == 256


def test_flags_errors():
    with pytest.raises(ValueError, match='adm-nope.*adm-256-uncond'):
        adm_flags_from('adm-nope')
    with pytest.raises(ValueError, match='adm-nope.*adm-256-uncond'):
        adm_flags_from(dict(preset='adm-nope'))
    with pytest.raises(ValueError, match='num_chanels.*num_channels'):
        adm_flags_from(dict(preset='adm-256-uncond', num_chanels=64))


def test_channel_mult_and_attention_forms_agree():
    as_strings = build_adm_unet(small_flags('adm-64-cond',
                                            channel_mult='1,2,2'))
    as_tuples = build_adm_unet(small_flags(
        'adm-64-cond', channel_mult=(1, 2, 2),
        attention_resolutions=(32, 16, 8)))
    assert as_strings.channel_mult == as_tuples.channel_mult == (1, 2, 2)
    assert ({k: v.shape for k, v in as_strings.state_dict().items()}
            == {k: v.shape for k, v in as_tuples.state_dict().items()})


# ----------------------------------------------------------------------------
# block specs
def test_block_specs_adm_256_uncond():
    with torch.device('meta'):
        model = build_adm_unet('adm-256-uncond')
    specs = model.block_specs()
    assert model.num_blocks == len(specs) == 37
    assert model.out_index == 38
    assert [s.index for s in specs] == list(range(1, 38))
    assert {s.kind for s in specs[:18]} == {'input'}
    assert specs[18].kind == 'middle'
    assert {s.kind for s in specs[19:]} == {'output'}
    assert specs[23] == BlockSpec(index=24, kind='output', channels=1024,
                                  stride=16)
    assert specs[18] == BlockSpec(19, 'middle', 1024, 32)
    assert specs[-1] == BlockSpec(37, 'output', 256, 1)


@pytest.mark.parametrize('preset', ['adm-512-cond', 'adm-128-cond'])
def test_block_specs_match_features(preset):
    model = build_adm_unet(small_flags(preset, num_res_blocks=1)).eval()
    x, t, y = make_inputs(model)
    features = all_features(model, x, t, y)
    size = x.shape[-1]
    for spec in model.block_specs():
        assert features[spec.index].shape == (
            2, spec.channels, size // spec.stride, size // spec.stride)
    assert features[model.out_index].shape == (2, 6, size, size)


# ----------------------------------------------------------------------------
# forward_intermediates
@pytest.fixture(scope='module')
def pair():
    return make_pair(small_flags('adm-128-cond', num_res_blocks=1))


def test_forward_matches_forward_intermediates(pair):
    ref, ours = pair
    x, t, y = make_inputs(ours)
    with torch.no_grad():
        assert torch.equal(ours(x, t, y), all_features(ours, x, t, y)[
            ours.out_index])


def test_stop_early_skips_later_blocks(pair):
    _, ours = pair
    x, t, y = make_inputs(ours)
    full = all_features(ours, x, t, y)
    n_in = len(ours.input_blocks)
    wanted = [3, n_in + 1, n_in + 4]  # input, middle and output blocks
    ran = []
    later = list(ours.output_blocks)[3:] + [ours.out]
    handles = [m.register_forward_hook(lambda *_, m=m: ran.append(m))
               for m in later]
    try:
        with torch.no_grad():
            early = ours.forward_intermediates(x, t, wanted, y=y)
        assert ran == []
        assert early.keys() == set(wanted)
        for index in wanted:
            assert torch.equal(early[index], full[index])
        with torch.no_grad():
            last = ours.forward_intermediates(x, t, [ours.num_blocks], y=y)
        assert ran == later[:-1]  # all output blocks, but not `out`
        assert torch.equal(last[ours.num_blocks], full[ours.num_blocks])
        ran.clear()
        with torch.no_grad():
            ours.forward_intermediates(x, t, wanted, y=y, stop_early=False)
        assert ran == later
    finally:
        for handle in handles:
            handle.remove()


def test_zero_injection_changes_nothing(pair):
    _, ours = pair
    x, t, y = make_inputs(ours)
    specs = ours.block_specs()
    zeros = {i: torch.zeros(2, specs[i - 1].channels, 1, 1)
             for i in (2, len(ours.input_blocks) + 1, ours.num_blocks - 1)}
    assert all(
        torch.equal(a, b) for a, b in zip(
            all_features(ours, x, t, y).values(),
            all_features(ours, x, t, y, injections=zeros).values()))


def test_injection_matches_hooked_reference(pair):
    ref, ours = pair
    x, t, y = make_inputs(ours)
    n_in = len(ours.input_blocks)
    plain = all_features(ours, x, t, y)
    generator = torch.Generator().manual_seed(2)
    injections = {i: torch.randn(plain[i].shape, generator=generator)
                  for i in (2, n_in - 1, n_in + 1, n_in + 3)}
    injected = all_features(ours, x, t, y, injections=injections)
    assert parity_error(
        injected, reference_features(ref, x, t, y, injections)) <= TOL
    # the injected sum is the returned feature, and it propagates
    assert torch.equal(injected[2], plain[2] + injections[2])
    assert torch.equal(injected[1], plain[1])
    assert not torch.allclose(injected[ours.out_index],
                              plain[ours.out_index])


def test_checkpoint_fn_wraps_every_block_and_keeps_gradients(pair):
    _, ours = pair
    x, t, y = make_inputs(ours)
    calls = []

    def checkpoint_fn(block, h, emb):
        calls.append(block)
        return torch.utils.checkpoint.checkpoint(block, h, emb,
                                                 use_reentrant=False)

    blocks = list(range(1, ours.out_index + 1))
    plain = ours.forward_intermediates(x, t, blocks, y=y)
    sum(f.square().mean() for f in plain.values()).backward()
    grads = {n: p.grad.clone() for n, p in ours.named_parameters()}
    ours.zero_grad(set_to_none=True)
    wrapped = ours.forward_intermediates(x, t, blocks, y=y,
                                         checkpoint_fn=checkpoint_fn)
    sum(f.square().mean() for f in wrapped.values()).backward()
    try:
        assert calls == [*ours.input_blocks, ours.middle_block,
                         *ours.output_blocks]
        for index in blocks:
            assert torch.equal(wrapped[index], plain[index])
        for name, param in ours.named_parameters():
            torch.testing.assert_close(param.grad, grads[name])
    finally:
        ours.zero_grad(set_to_none=True)


# ----------------------------------------------------------------------------
# input validation
def test_bad_block_indices(pair):
    _, ours = pair
    x, t, y = make_inputs(ours)
    for bad in (0, ours.out_index + 1):
        with pytest.raises(ValueError,
                           match=rf'index {bad} .*1\.\.{ours.out_index}'):
            ours.forward_intermediates(x, t, [1, bad], y=y)
    with pytest.raises(ValueError,
                       match=rf'index {ours.out_index} .*1\.\.'
                       rf'{ours.num_blocks}'):
        ours.forward_intermediates(x, t, [1], y=y,
                                   injections={ours.out_index: x})


def test_bad_inputs(pair):
    _, ours = pair
    x, t, y = make_inputs(ours)
    with pytest.raises(ValueError, match='4 channels.*in_channels=3'):
        ours(torch.zeros(2, 4, 32, 32), t, y)
    with pytest.raises(ValueError, match='30x32 .*multiples of 16'):
        ours(torch.zeros(2, 3, 30, 32), t, y)
    with pytest.raises(ValueError, match='class-conditional.*y is required'):
        ours(x, t)
    with pytest.raises(ValueError, match='timesteps must have shape'):
        ours(x, t[:1], y)
    with pytest.raises(ValueError, match='block 2 has shape'):
        ours.forward_intermediates(x, t, [3], y=y,
                                   injections={2: torch.zeros(2, 7, 1, 1)})


def test_unconditional_model_rejects_labels():
    model = build_adm_unet(small_flags('adm-64-cond', class_cond=False,
                                       num_res_blocks=1))
    x, t, _ = make_inputs(model)
    with pytest.raises(ValueError, match='not class-conditional'):
        model(x, t, torch.tensor([1, 2]))


# ----------------------------------------------------------------------------
# redraw_parameters_
def test_redraw_is_deterministic_and_complete():
    flags = small_flags('adm-64-cond', num_res_blocks=1)
    fresh = create_reference(flags)
    zero_params = [n for n, p in fresh.named_parameters() if not p.any()]
    assert 'out.2.weight' in zero_params  # zero-initialised by the reference
    first = redraw_parameters_(create_reference(flags),
                               torch.Generator().manual_seed(5))
    second = redraw_parameters_(create_reference(flags),
                                torch.Generator().manual_seed(5))
    first_params = dict(first.named_parameters())
    for name, param in second.named_parameters():
        assert torch.equal(param, first_params[name]), name
        assert param.any(), name
    assert not torch.equal(first_params['out.0.weight'],
                           torch.ones_like(first_params['out.0.weight']))


def test_redraw_under_a_default_device_context_draws_on_the_cpu():
    """Models built under ``with torch.device('cuda')`` (tools/device/speed.py) are re-drawn
    from the CPU generator: the samples must not follow the default device (meta here)."""
    module = torch.nn.Conv2d(2, 3, 3)
    expected = redraw_parameters_(torch.nn.Conv2d(2, 3, 3), torch.Generator().manual_seed(1))
    with torch.device('meta'):
        redraw_parameters_(module, torch.Generator().manual_seed(1))
    assert module.weight.device.type == 'cpu'
    assert torch.equal(module.weight, expected.weight)
    assert torch.equal(module.bias, expected.bias)
