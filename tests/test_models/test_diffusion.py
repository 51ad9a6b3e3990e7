"""Noise schedules and q_sample against OpenAI's guided-diffusion."""
import warnings

import numpy as np
import pytest
import torch

with warnings.catch_warnings():  # its torch.cuda.amp decorators are deprecated
    warnings.simplefilter('ignore', FutureWarning)
    from guided_diffusion.gaussian_diffusion import (GaussianDiffusion,
                                                     LossType, ModelMeanType,
                                                     ModelVarType,
                                                     get_named_beta_schedule)

from mmdiffssl.models.diffusion import DiffusionSchedule, beta_schedule


@pytest.mark.parametrize('name', ['linear', 'cosine'])
@pytest.mark.parametrize('num_steps', [1000, 250, 4000, 1])
def test_beta_schedule_matches_guided_diffusion(name, num_steps):
    ours = beta_schedule(name, num_steps)
    assert ours.dtype == torch.float64 and ours.shape == (num_steps, )
    np.testing.assert_array_equal(ours.numpy(),
                                  get_named_beta_schedule(name, num_steps))


@pytest.mark.parametrize('name', ['linear', 'cosine'])
def test_q_sample_matches_guided_diffusion(name):
    reference = GaussianDiffusion(
        betas=get_named_beta_schedule(name, 1000),
        model_mean_type=ModelMeanType.EPSILON,
        model_var_type=ModelVarType.LEARNED_RANGE,
        loss_type=LossType.MSE)
    schedule = DiffusionSchedule(name, 1000)
    np.testing.assert_allclose(schedule.alphas_cumprod.numpy(),
                               reference.alphas_cumprod, rtol=1e-12, atol=0)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 8, 8, generator=generator)
    noise = torch.randn(4, 3, 8, 8, generator=generator)
    t = torch.tensor([0, 1, 500, 999])
    ours = schedule.q_sample(x0, t, noise)
    assert ours.dtype == x0.dtype
    torch.testing.assert_close(ours, reference.q_sample(x0, t, noise),
                               rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(schedule.q_sample(x0, 999, noise),
                               schedule.q_sample(x0, torch.full((4, ), 999),
                                                 noise))


def test_q_sample_keeps_low_precision_dtype():
    schedule = DiffusionSchedule('linear', 1000)
    x0 = torch.ones(2, 3, 4, 4, dtype=torch.bfloat16)
    out = schedule.q_sample(x0, torch.tensor([0, 999]), torch.zeros_like(x0))
    assert out.dtype == torch.bfloat16
    expected = schedule.sqrt_alphas_cumprod[[0, 999]].to(torch.bfloat16)
    assert torch.equal(out[:, 0, 0, 0], expected)


@pytest.mark.parametrize('bad', [-1, 1000, 1234])
def test_q_sample_rejects_out_of_range_timesteps(bad):
    schedule = DiffusionSchedule('cosine', 1000)
    x0 = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match=rf'timestep {bad} .*\[0, 1000\)'):
        schedule.q_sample(x0, torch.tensor([5, bad]))
    with pytest.raises(ValueError, match=rf'timestep {bad} '):
        schedule.q_sample(x0, bad)


def test_q_sample_rejects_malformed_arguments():
    schedule = DiffusionSchedule('linear', 1000)
    x0 = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match='integers'):
        schedule.q_sample(x0, torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match=r'shape \(2,\)'):
        schedule.q_sample(x0, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match='noise shape'):
        schedule.q_sample(x0, 3, torch.zeros(2, 3, 4, 5))


def test_beta_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'quadratic'.*linear, cosine"):
        beta_schedule('quadratic', 1000)
    with pytest.raises(ValueError, match='num_steps'):
        beta_schedule('linear', 0)
