"""DiffusersUNetBackbone (pixel-space diffusers UNet2DModel, RepFusion's DDPM teachers) on a
tiny random model: parity with hooks on diffusers' full forward, schedule, offline loading."""
import os.path as osp
import shutil

import pytest
import torch

pytest.importorskip('diffusers')

from helpers.sd_tiny import TINY_DDPM, perturb_  # noqa: E402
from helpers.sd_tiny import no_network  # noqa: E402,F401 (fixture)
from mmdiffssl.models.backbones import DiffusersUNetBackbone  # noqa: E402
from mmdiffssl.models.noise import hashed_normal  # noqa: E402

DDPM_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule='linear', beta_start=0.0001,
                      beta_end=0.02)

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def ddpm_folder(tmp_path_factory):
    """A DDPMPipeline-style folder: unet/ and scheduler/ (as google/ddpm-cifar10-32)."""
    from diffusers import DDPMScheduler, UNet2DModel
    folder = str(tmp_path_factory.mktemp('tiny_ddpm'))
    torch.manual_seed(0)
    unet = perturb_(UNet2DModel(**TINY_DDPM), scale=0.05)
    unet.save_pretrained(osp.join(folder, 'unet'))
    DDPMScheduler(**DDPM_SCHEDULER).save_pretrained(osp.join(folder, 'scheduler'))
    return folder


def images(batch=2, size=16, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_block_table_and_pyramid(ddpm_folder):
    bb = DiffusersUNetBackbone(pretrained=ddpm_folder)
    table = [(s.name, s.kind, s.channels, s.stride) for s in bb.block_table]
    assert table == [('down_blocks.0', 'input', 16, 1), ('down_blocks.1', 'input', 32, 2),
                     ('down_blocks.2', 'input', 32, 4), ('mid_block', 'middle', 32, 4),
                     ('up_blocks.0', 'output', 32, 4), ('up_blocks.1', 'output', 32, 2),
                     ('up_blocks.2', 'output', 16, 1)]
    assert bb.blocks == (7, 6, 5) and bb.out_strides == [1, 2, 4]
    assert bb.size_divisibility == 4


def test_features_equal_hooks_on_the_full_diffusers_forward(ddpm_folder):
    from diffusers import DDPMScheduler
    bb = DiffusersUNetBackbone(pretrained=ddpm_folder, blocks=tuple(range(1, 8)),
                               timesteps=(20, 600), prune=False).eval()
    scheduler = DDPMScheduler(**DDPM_SCHEDULER)
    x = images()
    with torch.no_grad():
        feats = bb.intermediates(x)
    ref, handles = {}, []
    for spec in bb.block_table:
        module = bb.unet.get_submodule(spec.name)
        if spec.kind != 'middle':
            module = (getattr(module, 'attentions', None) or module.resnets)[-1]
        handles.append(module.register_forward_hook(
            lambda m, a, out, i=spec.index: ref.__setitem__(i, out)))
    noise = hashed_normal(x.shape, 0)
    for i, t in enumerate((20, 600)):
        t_batch = torch.full((2, ), t)
        with torch.no_grad():
            bb.unet(scheduler.add_noise(x, noise, t_batch), t_batch)
        for block in range(1, 8):
            scale = ref[block].abs().max().item()
            torch.testing.assert_close(feats[block][i], ref[block], rtol=1e-4,
                                       atol=1e-5 * scale, msg=f'block {block}, t={t}')
    for handle in handles:
        handle.remove()
    # the schedule is the scheduler's
    torch.testing.assert_close(bb.schedule.alphas_cumprod.float(), scheduler.alphas_cumprod,
                               rtol=1e-5, atol=1e-6)


def test_offline_layouts(ddpm_folder, tmp_path, no_network):
    ref = DiffusersUNetBackbone(pretrained=ddpm_folder, blocks=(6, ), prune=False).eval()
    x = images(1)
    with torch.no_grad():
        expected = ref(x)[0]
    # a model folder (config.json at the root) with scheduler_config.json next to it
    model_dir = str(tmp_path / 'model')
    shutil.copytree(osp.join(ddpm_folder, 'unet'), model_dir)
    shutil.copy(osp.join(ddpm_folder, 'scheduler', 'scheduler_config.json'), model_dir)
    # a single diffusers-layout file + a config folder without weights
    from safetensors.torch import save_file
    single = str(tmp_path / 'ddpm.safetensors')
    save_file(ref.unet.state_dict(), single)
    config = str(tmp_path / 'config')
    shutil.copytree(osp.join(ddpm_folder, 'unet'), osp.join(config, 'unet'),
                    ignore=shutil.ignore_patterns('*.safetensors'))
    for kwargs in (dict(pretrained=model_dir), dict(pretrained=single, config=config)):
        bb = DiffusersUNetBackbone(blocks=(6, ), **kwargs).eval()
        for key, value in bb.unet.state_dict().items():
            assert torch.equal(ref.unet.state_dict()[key], value), key
        with torch.no_grad():   # (memory-mapped weights may take other BLAS paths: not bitwise)
            torch.testing.assert_close(bb(x)[0], expected, rtol=1e-4, atol=1e-5)
    assert bb.schedule.name == 'linear'   # DDPM default without a scheduler config
    with pytest.raises(FileNotFoundError, match=r'(?s)absent.*unet/config.json'):
        DiffusersUNetBackbone(pretrained=str(tmp_path / 'absent'))
    save_file({'foo': torch.zeros(1)}, single)
    with pytest.raises(ValueError, match='no original-layout converter'):
        DiffusersUNetBackbone(pretrained=single, config=config)


def test_frozen_and_fine_tuned(ddpm_folder):
    frozen = DiffusersUNetBackbone(pretrained=ddpm_folder, blocks=(6, )).train()
    assert not frozen.unet.training and not any(p.requires_grad for p in frozen.parameters())
    assert not any(k.startswith('unet.') for k in frozen.state_dict())
    tuned = DiffusersUNetBackbone(pretrained=ddpm_folder, blocks=(6, ), frozen=False).train()
    tuned(images(1))[0].mean().backward()
    assert all(p.grad is not None for p in tuned.unet.parameters() if p.requires_grad)
    assert all(p.requires_grad for p in tuned.unet.parameters())
    names = [n for n, _ in tuned.unet.named_parameters()]   # what never runs is not built
    assert not any(n.startswith(('up_blocks.2.', 'up_blocks.1.upsamplers.', 'conv_out.'))
                   for n in names)


@pytest.mark.parametrize('kwargs, match', [
    (dict(blocks=(8, )), r'block 8 .*1\.\.7'),
    (dict(blocks=('mid', )), "'mid'"),
    (dict(timesteps=(1000, )), r'timestep 1000 .*\[0, 1000\)'),
    (dict(pyramid_strides=(8, )), 'stride 8'),
])
def test_bad_arguments(ddpm_folder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffusersUNetBackbone(pretrained=ddpm_folder, **kwargs)


def test_bad_inputs(ddpm_folder):
    bb = DiffusersUNetBackbone(pretrained=ddpm_folder, blocks=(6, )).eval()
    with pytest.raises(ValueError, match='18x16 is not divisible by 4'):
        bb(images(1, 16)[:, :, :2].repeat(1, 1, 9, 1))
    with pytest.raises(ValueError, match='3 input channels'):
        bb(torch.zeros(1, 1, 16, 16))
