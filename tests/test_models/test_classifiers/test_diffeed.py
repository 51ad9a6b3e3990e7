"""DifFeedBackbone: block mapping, gradients, frozen U-Net, BN modes and the zero-feedback case."""
import copy

import pytest
import torch

from mmdiffssl.models.backbones import ADMBackbone
from mmdiffssl.models.classifiers import DifFeedBackbone, mirror_block
from mmdiffssl.models.unets import adm_flags_from, build_adm_unet

# Blocks of TINY: 1-6 input (strides 1,1,2,2,4,4), 7 middle, 8-13 output (4,2,2,1,1,1).
TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult='1,2,2',
            attention_resolutions='16,8', num_head_channels=16, learn_sigma=False)
FEEDBACK = (8, 9, 10, 11, 12)   # -> encoder blocks 6, 5, 4, 3, 2; 9 -> 5 and 11 -> 3 resize


pytestmark = pytest.mark.usefixtures('one_thread')


def adm(**kwargs):
    kwargs = dict(dict(arch=TINY, random_init='redraw', blocks=(8, ), timesteps=(150, ),
                       noise='fresh', noise_seed=3), **kwargs)
    return ADMBackbone(**kwargs)


def difeed(feedback_blocks=FEEDBACK, **kwargs):
    return DifFeedBackbone(dict(type='ADMBackbone', **dict(
        dict(arch=TINY, random_init='redraw', blocks=(8, ), timesteps=(150, ), noise='fresh',
             noise_seed=3), **kwargs)), feedback_blocks=feedback_blocks)


def images(batch=4, seed=0):
    return torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_paper_mapping_on_adm_256_uncond():
    with torch.device('meta'):
        unet = build_adm_unet(adm_flags_from('adm-256-uncond'))
    specs = {s.index: s for s in unet.block_specs()}
    targets = [mirror_block(b, unet.num_blocks) for b in (21, 24, 27, 30, 33, 36)]
    assert targets == [17, 14, 11, 8, 5, 2]    # the paper's 38 - b
    for b, e in zip((21, 24, 27, 30, 33, 36), targets):
        assert specs[b].kind == 'output' and specs[e].kind == 'input'
        assert specs[b].stride == specs[e].stride


def test_layers_targets_and_shapes():
    model = difeed().train()
    assert model.target_blocks == (6, 5, 4, 3, 2)
    conv, bn, relu = model.feedback[4]                   # block 12 (32 ch) -> block 2 (32 ch)
    assert conv.bias is None and conv.kernel_size == (1, 1)
    assert (conv.in_channels, conv.out_channels) == (32, 32)
    assert isinstance(bn, torch.nn.BatchNorm2d) and isinstance(relu, torch.nn.ReLU)
    assert model.feedback[0][0].in_channels == 64 and model.feedback[0][0].out_channels == 64
    out = model(images())
    assert len(out) == 1 and out[0].shape == (4, 64, 8, 8)
    assert model.out_channels == [64] and model.blocks == (8, )
    two_t = difeed(timesteps=(50, 300))
    assert two_t(images())[0].shape == (4, 128, 8, 8)


@pytest.mark.parametrize('training', [True, False])
def test_zero_feedback_reproduces_plain_backbone_with_fresh_noise(training):
    """Feedback outputs zeroed -> exactly the plain backbone, call after call, in training and
    in eval mode (the noise module draws from another generator in each): both passes saw the
    same x_t and the generator advanced once per forward, as for the plain one."""
    model = difeed(timesteps=(50, 300)).train(training)
    for layer in model.feedback:
        torch.nn.init.zeros_(layer[1].weight)
        torch.nn.init.zeros_(layer[1].bias)
    plain = adm(timesteps=(50, 300)).train(training)
    x = images()
    for _ in range(2):
        with torch.no_grad():
            torch.testing.assert_close(model(x)[0], plain(x)[0], rtol=0, atol=0)
    # The feedback with its default init changes the features.
    changed = difeed(timesteps=(50, 300)).train(training)
    with torch.no_grad():
        assert not torch.allclose(changed(x)[0], adm(timesteps=(50, 300)).train(training)(x)[0])


@pytest.mark.parametrize('noise', ['fixed', 'none'])
def test_zero_feedback_other_noise_modes(noise):
    model = difeed(noise=noise).eval()
    for layer in model.feedback:
        torch.nn.init.zeros_(layer[1].weight)
        torch.nn.init.zeros_(layer[1].bias)
    x = images(2)
    torch.testing.assert_close(model(x)[0], adm(noise=noise).eval()(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize('training', [True, False])
def test_both_passes_see_the_same_x_t(training):
    """Pass 1 and pass 2 call the backbone with identical noised inputs ('fresh' noise)."""
    model = difeed().train(training)
    seen = []
    orig = model.adm._q_sample

    def spy(x, t, draw, keys):
        out = orig(x, t, draw, keys)
        seen.append(out.detach().clone())
        return out

    model.adm._q_sample = spy
    model(images(2))
    model(images(2))
    assert len(seen) == 4 and torch.equal(seen[0], seen[1]) and torch.equal(seen[2], seen[3])
    assert not torch.equal(seen[0], seen[2])   # fresh noise: the next forward draws anew


def test_gradients_reach_feedback_and_unet_stays_frozen():
    torch.manual_seed(0)
    model = difeed().train()
    head = torch.nn.Linear(64, 3)
    unet_before = copy.deepcopy(model.adm.unet.state_dict())
    feedback_before = copy.deepcopy(model.feedback.state_dict())
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    assert all(not p.requires_grad for p in model.adm.unet.parameters())
    optimizer = torch.optim.SGD(params, lr=0.1)
    feat = model(images())[0]
    assert feat.requires_grad
    loss = torch.nn.functional.cross_entropy(head(feat.mean((2, 3))), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    # The layer feeding the second encoder block (block 12 -> block 2) gets a gradient.
    assert model.target_blocks[4] == 2
    grad = model.feedback[4][0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    for layer in model.feedback:
        assert layer[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.adm.unet.parameters())
    optimizer.step()
    for key, value in model.adm.unet.state_dict().items():
        assert torch.equal(value, unet_before[key]), key
    after = model.feedback.state_dict()
    assert not torch.equal(after['4.0.weight'], feedback_before['4.0.weight'])


def test_batchnorm_modes_follow_train_and_eval():
    model = difeed()
    x = images()
    for mode in (True, False, True):       # train -> eval (an evaluation) -> train again
        model.train(mode)
        assert all(layer[1].training == mode for layer in model.feedback)
        assert not any(m.training for m in model.adm.unet.modules())
        before = model.feedback[0][1].running_mean.clone()
        with torch.no_grad():
            model(x)
        moved = not torch.equal(before, model.feedback[0][1].running_mean)
        assert moved == mode


def test_bad_configs():
    with pytest.raises(ValueError, match='frozen=True'):
        difeed(frozen=False)
    with pytest.raises(ValueError, match='ensemble'):
        difeed(noise='ensemble')
    with pytest.raises(ValueError, match='not a decoder block'):
        difeed(feedback_blocks=(6, ))
    with pytest.raises(ValueError, match='cannot reach the read-out'):
        difeed(feedback_blocks=(8, 10), blocks=(3, ))


def test_state_dict_round_trip_keeps_feedback():
    model = difeed().train()
    model(images())
    other = difeed()
    other.load_state_dict(model.state_dict())
    for key, value in model.feedback.state_dict().items():
        assert torch.equal(value, other.feedback.state_dict()[key])


def test_mmdiffssl_imports_without_mmpretrain():
    """DifFeedBackbone needs only torch and mmengine; an mmpretrain head says it needs it."""
    from conftest import run_tool
    code = '\n'.join([
        'import importlib.util, sys',
        'real = importlib.util.find_spec',
        'hidden = lambda name: name == "mmpretrain" or name.startswith("mmpretrain.")',
        'importlib.util.find_spec = lambda name, *a, **k: None if hidden(name) else '
        'real(name, *a, **k)',
        'class Block:',
        '    def find_spec(self, name, path=None, target=None):',
        '        if hidden(name):',
        '            raise ModuleNotFoundError(f"No module named {name!r}", name=name)',
        'sys.meta_path.insert(0, Block())',
        'import mmdiffssl',
        'from mmengine.registry import MODELS',
        'assert MODELS.get("DifFeedBackbone").load().__name__ == "DifFeedBackbone"',
        'try:',
        '    MODELS.build(dict(type="AttentionPoolHead", num_classes=2, in_channels=4))',
        'except ModuleNotFoundError as err:',
        '    assert "AttentionPoolHead needs \'mmpretrain\'" in str(err), err',
        'else:',
        '    raise AssertionError("AttentionPoolHead built without mmpretrain")',
        'assert not any(hidden(m) for m in sys.modules)',
        'print("imported without mmpretrain")',
    ])
    assert 'imported without mmpretrain' in run_tool(['-c', code])
