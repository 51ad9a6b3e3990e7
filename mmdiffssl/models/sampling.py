"""Ancestral (DDPM) and DDIM sampling from an eps-predicting ADM U-Net.

Both follow guided-diffusion's ``p_sample_loop`` and ``ddim_sample_loop``: x0 predictions are
clipped to [-1, 1]; the variance is the learned range (``learn_sigma``) or the "fixed large"
one; every step draws its noise with ``torch.randn_like`` (from the global RNG, or from
``generator``), after the model call, so equal seeds give equal samples.
"""
import torch

from .ddpm_objective import DDPMObjective


class DiffusionSampler:
    """Samplers over a U-Net and its schedule.

    Args:
        unet (ADMUNet): eps-predicting U-Net (``2 C`` output channels with learn_sigma).
        objective (DDPMObjective): the schedule's posterior tables.
    """

    def __init__(self, unet, objective: DDPMObjective):
        self.unet = unet
        self.objective = objective

    def _noise(self, like, generator):
        if generator is None:
            return torch.randn_like(like)
        return torch.randn(like.shape, generator=generator).to(like)

    def _predict(self, x, t, y):
        """Clipped x0 prediction, posterior mean and log-variance of p(x_{t-1} | x_t)."""
        out = self.unet(x, t, y=y)
        eps, var_values = out.split(x.shape[1], dim=1) if self.objective.learn_sigma else \
            (out, None)
        mean, log_var, pred_x0 = self.objective.predicted_posterior(eps, var_values, x, t,
                                                                    clip_x0=True)
        return pred_x0, mean, log_var

    @torch.no_grad()
    def ddpm(self, noise, y=None, generator=None):
        """Ancestral sampling over all T steps from ``noise`` ``(B, C, H, W)``."""
        x = noise
        for step in reversed(range(self.objective.schedule.num_steps)):
            t = torch.full((x.shape[0], ), step, device=x.device, dtype=torch.long)
            _, mean, log_var = self._predict(x, t, y)
            z = self._noise(x, generator)
            x = mean + (step != 0) * torch.exp(0.5 * log_var) * z
        return x

    @torch.no_grad()
    def ddim(self, noise, y=None, eta=0.0, generator=None, steps=None):
        """DDIM sampling from ``noise`` (``eta=0``: deterministic).

        ``steps=None`` runs all T steps; ``steps=N`` runs the N evenly strided timesteps of
        guided-diffusion's ``timestep_respacing='ddimN'`` (see :func:`ddim_timesteps`), each
        step going to the previous used timestep, as its respaced ``ddim_sample_loop`` does.
        """
        obj = self.objective
        abar = obj.schedule.alphas_cumprod
        used = ddim_timesteps(obj.schedule.num_steps, steps)
        abar_prev = torch.cat([abar.new_ones(1), abar[used[:-1]]])  # abar of the next step
        x = noise
        for i in reversed(range(len(used))):
            t = torch.full((x.shape[0], ), used[i], device=x.device, dtype=torch.long)
            pred_x0, _, _ = self._predict(x, t, y)
            eps = (obj._take(obj.sqrt_recip_abar, t, x) * x - pred_x0) / \
                obj._take(obj.sqrt_recipm1_abar, t, x)
            a = obj._take(abar, t, x)
            a_prev = torch.full_like(a, abar_prev[i].item())
            sigma = eta * torch.sqrt((1 - a_prev) / (1 - a)) * torch.sqrt(1 - a / a_prev)
            z = self._noise(x, generator)
            mean = pred_x0 * torch.sqrt(a_prev) + torch.sqrt(1 - a_prev - sigma ** 2) * eps
            x = mean + (i != 0) * sigma * z
        return x


def ddim_timesteps(num_steps, steps=None):
    """The timesteps DDIM visits, ascending: all of ``range(num_steps)``, or for ``steps=N``
    ``range(0, num_steps, k)`` with the smallest integer stride k giving exactly N of them
    (guided-diffusion's ``'ddimN'`` respacing).

    Raises:
        ValueError: when no integer stride gives exactly N timesteps.
    """
    if steps is None:
        return list(range(num_steps))
    for stride in range(1, num_steps + 1):
        if len(range(0, num_steps, stride)) == steps:
            return list(range(0, num_steps, stride))
    raise ValueError(f'steps={steps}: no integer stride gives exactly {steps} of the '
                     f'{num_steps} diffusion steps (any divisor of {num_steps} works)')
