"""DDPMPretrainer: loss parity with guided-diffusion, a falling loss, checkpoints to backbone."""
import pytest
import torch

from mmdiffssl.models.backbones import ADMBackbone
from mmdiffssl.models.pretrainers import DDPMPretrainer, TimestepSampler
from mmdiffssl.utils.weight_init import redraw_parameters_

TINY = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult='1,2',
            attention_resolutions='8', num_head_channels=16)


@pytest.mark.parametrize('learn_sigma, schedule', [(True, 'linear'), (False, 'cosine'),
                                                   (True, 'cosine')])
def test_loss_equals_guided_diffusion_training_losses(learn_sigma, schedule):
    script_util = pytest.importorskip('guided_diffusion.script_util')
    arch = dict(TINY, learn_sigma=learn_sigma, noise_schedule=schedule, diffusion_steps=1000)
    model = DDPMPretrainer(arch)
    redraw_parameters_(model.unet, torch.Generator().manual_seed(0))
    diffusion = script_util.create_gaussian_diffusion(
        steps=1000, learn_sigma=learn_sigma, noise_schedule=schedule,
        rescale_learned_sigmas=True)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(4, 3, 16, 16, generator=gen) * 2 - 1
    x0[0, :, :2] = 1.0   # pixels at the ends of the range exercise the decoder NLL branches
    x0[1, :, :2] = -1.0
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.tensor([0, 1, 500, 999])
    ours = model.loss_terms(x0, t, noise)
    ref = diffusion.training_losses(model.unet, x0, t, noise=noise)
    for key in ('loss', 'mse') + (('vb', ) if learn_sigma else ()):
        torch.testing.assert_close(ours[key], ref[key], rtol=1e-5, atol=1e-6)


def test_vb_gradient_reaches_only_the_variance_channels():
    model = DDPMPretrainer(dict(TINY, learn_sigma=True))
    redraw_parameters_(model.unet, torch.Generator().manual_seed(0))
    out = torch.randn(2, 6, 16, 16, requires_grad=True)
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    t = torch.tensor([3, 700])
    noise = torch.randn_like(x0)
    x_t = model.schedule.q_sample(x0, t, noise)
    model.objective.losses(out, x0, x_t, t, noise)['vb'].sum().backward()
    assert out.grad[:, :3].abs().sum() == 0 and out.grad[:, 3:].abs().sum() > 0


def test_loss_falls_on_a_tiny_run():
    torch.manual_seed(0)
    model = DDPMPretrainer(dict(TINY, learn_sigma=False))
    data = torch.rand(8, 3, 16, 16) * 0.2 - 0.1 + torch.linspace(-0.8, 0.8, 16).view(1, 1, 16, 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(60):
        loss = model(data)['loss']
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)


def test_importance_sampler_moves_to_high_loss_steps():
    sampler = TimestepSampler(4, 'loss-second-moment', history=2, uniform_prob=0.0)
    t = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    sampler.update(t, torch.tensor([1.0, 1.0, 1.0, 10.0] * 2))
    probs = sampler.probabilities()
    assert probs[3] == pytest.approx(10 / 13)
    steps, weights = sampler.sample(1000, 'cpu')
    assert (steps == 3).float().mean() > 0.7
    torch.testing.assert_close(weights, 1.0 / (4 * probs[steps].float()))
    with pytest.raises(ValueError, match='sometimes'):
        TimestepSampler(4, 'sometimes')


def test_checkpoint_loads_into_backbone_with_ema(tmp_path, fashion_mnist_root):
    """A pretraining run's checkpoint (with EMAHook) loads into ADMBackbone, EMA by choice."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from conftest import ROOT
    cfg = Config.fromfile(f'{ROOT}/configs/pretrain/ddpm_adm-tiny_1xb64-5e_fashion-mnist-32px.py')
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_dataloader.dataset.update(data_root=fashion_mnist_root, indices=32)
    cfg.train_dataloader.update(num_workers=0, batch_size=16)
    cfg.train_cfg.max_epochs = 2
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    ckpt = f'{cfg.work_dir}/epoch_2.pth'
    saved = torch.load(ckpt)
    arch = cfg.model.arch
    ema = ADMBackbone(arch=arch, blocks=(8, ), checkpoint=ckpt, checkpoint_prefix='unet.')
    raw = ADMBackbone(arch=arch, blocks=(8, ), checkpoint=ckpt, checkpoint_key='ema_state_dict',
                      checkpoint_prefix='module.unet.')
    live = runner.model.unet.state_dict()
    differs = False
    for key, value in raw.unet.state_dict().items():
        assert torch.equal(value, live[key]), key                        # raw = trained weights
        assert torch.equal(ema.unet.state_dict()[key], saved['state_dict']['unet.' + key])
        differs |= not torch.equal(ema.unet.state_dict()[key], value)
    assert differs, 'EMA weights equal the raw weights: EMAHook did not run'
