"""The DDPM training objective of guided-diffusion (epsilon prediction, hybrid loss).

For an eps-predicting model with learned-range variance (``learn_sigma``), the loss per image
is ``mse(eps_hat, eps) + vb * T / 1000``, where ``vb`` is the variational-bound term in bits
(the KL between the true and the predicted posterior, or the decoder NLL at t = 0), computed
with the mean prediction detached so only the variance head learns from it. Without
``learn_sigma`` the loss is the MSE alone. Coefficients are float64 tables indexed per
timestep and cast to float32, as guided-diffusion does.
"""
import math

import torch

from .diffusion import DiffusionSchedule


def mean_flat(x):
    """Mean over all but the batch dimension: ``(N, ...)`` -> ``(N,)``."""
    return x.mean(dim=tuple(range(1, x.dim())))


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    """Log-likelihood (nats) of images in [-1, 1] quantised to 256 levels, elementwise."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


class DDPMObjective:
    """Posterior tables of a schedule and the training loss built on them.

    Args:
        schedule (DiffusionSchedule): the forward process.
        learn_sigma (bool): the model outputs ``2 * C`` channels, eps then variance values.
    """

    def __init__(self, schedule: DiffusionSchedule, learn_sigma: bool):
        self.schedule = schedule
        self.learn_sigma = learn_sigma
        betas = schedule.betas
        abar = schedule.alphas_cumprod
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        self.posterior_variance = betas * (1.0 - abar_prev) / (1.0 - abar)
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]]))
        self.posterior_mean_coef1 = betas * abar_prev.sqrt() / (1.0 - abar)
        self.posterior_mean_coef2 = (1.0 - abar_prev) * (1.0 - betas).sqrt() / (1.0 - abar)
        self.sqrt_recip_abar = (1.0 / abar).sqrt()
        self.sqrt_recipm1_abar = (1.0 / abar - 1.0).sqrt()
        self.log_betas = betas.log()
        # guided-diffusion's FIXED_LARGE variance of a model without learned sigma: the betas,
        # with the posterior's first value at t = 1 (the posterior's own is 0 at t = 0).
        self.fixed_large_log_variance = torch.log(
            torch.cat([self.posterior_variance[1:2], betas[1:]]))

    @staticmethod
    def _take(table, t, like):
        """``table[t]`` as float32 on ``like``'s device, shaped to broadcast over ``like``."""
        values = table.to(t.device)[t].float()
        return values.view(-1, *([1] * (like.dim() - 1)))

    def q_posterior(self, x0, x_t, t):
        """Mean and clipped log-variance of q(x_{t-1} | x_t, x0)."""
        mean = self._take(self.posterior_mean_coef1, t, x_t) * x0 + \
            self._take(self.posterior_mean_coef2, t, x_t) * x_t
        return mean, self._take(self.posterior_log_variance_clipped, t, x_t)

    def predicted_posterior(self, eps, var_values, x_t, t, clip_x0=False):
        """Mean, log-variance and x0 prediction of p(x_{t-1} | x_t).

        Args:
            eps (Tensor): predicted noise, shaped as ``x_t``.
            var_values (Tensor | None): the model's variance values in [-1, 1] (learned
                sigma: they interpolate between the clipped posterior and the beta
                log-variance), or None for the fixed large variance.
            x_t (Tensor): ``(B, C, H, W)`` noised images; ``t``: ``(B,)`` timesteps.
            clip_x0 (bool): clamp the x0 prediction to [-1, 1] before the mean (sampling's
                ``clip_denoised``); the loss uses it unclipped.

        Returns:
            tuple: mean, log-variance and x0 prediction, each shaped as ``x_t``.
        """
        if var_values is None:
            log_variance = self._take(self.fixed_large_log_variance, t, x_t)
        else:
            min_log = self._take(self.posterior_log_variance_clipped, t, x_t)
            max_log = self._take(self.log_betas, t, x_t)
            frac = (var_values + 1) / 2
            log_variance = frac * max_log + (1 - frac) * min_log
        pred_x0 = self._take(self.sqrt_recip_abar, t, x_t) * x_t - \
            self._take(self.sqrt_recipm1_abar, t, x_t) * eps
        if clip_x0:
            pred_x0 = pred_x0.clamp(-1, 1)
        mean, _ = self.q_posterior(pred_x0, x_t, t)
        return mean, log_variance, pred_x0

    def vb_bits(self, eps, var_values, x0, x_t, t):
        """The variational-bound term per image, in bits: ``(N,)``."""
        true_mean, true_log_var = self.q_posterior(x0, x_t, t)
        mean, log_var, _ = self.predicted_posterior(eps, var_values, x_t, t)
        kl = mean_flat(normal_kl(true_mean, true_log_var, mean, log_var)) / math.log(2.0)
        nll = -mean_flat(discretized_gaussian_log_likelihood(
            x0, means=mean, log_scales=0.5 * log_var)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def losses(self, model_output, x0, x_t, t, noise):
        """Loss terms per image.

        Args:
            model_output (Tensor): ``(N, C or 2C, H, W)`` U-Net output at (x_t, t).
            x0, x_t, noise (Tensor): ``(N, C, H, W)``.
            t (Tensor): ``(N,)`` int64 timesteps.

        Returns:
            dict[str, Tensor]: ``mse``, ``vb`` (when learn_sigma) and ``loss``, each ``(N,)``.
        """
        channels = x0.shape[1]
        if self.learn_sigma:
            if model_output.shape[1] != 2 * channels:
                raise ValueError(f'learn_sigma needs {2 * channels} output channels, the model '
                                 f'gives {model_output.shape[1]}')
            eps, var_values = model_output.split(channels, dim=1)
        else:
            eps, var_values = model_output, None
        terms = {'mse': mean_flat((noise - eps) ** 2)}
        if var_values is not None:
            vb = self.vb_bits(eps.detach(), var_values, x0, x_t, t)
            terms['vb'] = vb * self.schedule.num_steps / 1000.0
            terms['loss'] = terms['mse'] + terms['vb']
        else:
            terms['loss'] = terms['mse']
        return terms
