"""DDPMPretrainer: trains an ADM U-Net with guided-diffusion's objective in mmengine."""
import torch
import torch.nn as nn
from mmengine.model import BaseModel

from mmdiffssl.models.ddpm_objective import DDPMObjective
from mmdiffssl.models.diffusion import DiffusionSchedule
from mmdiffssl.models.input_range import check_pixel_range_once
from mmdiffssl.models.noise import DiffusionNoise, GeneratorStateMixin
from mmdiffssl.models.unets import adm_flags_from, build_adm_unet

SAMPLERS = ('uniform', 'loss-second-moment')


class TimestepSampler(GeneratorStateMixin, nn.Module):
    """Draws training timesteps, uniformly or by importance (guided-diffusion's schemes).

    'loss-second-moment' keeps the last ``history`` losses of every timestep; once each
    timestep has a full history it samples t with probability proportional to
    ``sqrt(mean(loss_t ** 2))`` (mixed with ``uniform_prob`` of uniform) and returns the
    importance weights ``1 / (T * p_t)`` that keep the loss unbiased. The generator's state
    and the loss history are part of the state dict, so a resumed run draws the same t.

    Args:
        num_steps (int): T.
        kind (str): 'uniform' or 'loss-second-moment'.
        seed (int): seed of the per-rank stream (see ``GeneratorStateMixin``).
    """

    def __init__(self, num_steps, kind='uniform', seed=0, history=10, uniform_prob=0.001):
        super().__init__()
        if kind not in SAMPLERS:
            raise ValueError(f"timestep sampler '{kind}' is not one of {SAMPLERS}")
        self.num_steps, self.kind, self.uniform_prob = num_steps, kind, uniform_prob
        self._init_generator(seed)   # a per-rank stream, the rank read at each draw
        self.register_buffer('loss_history', torch.zeros(num_steps, history, dtype=torch.float64))
        self.register_buffer('loss_counts', torch.zeros(num_steps, dtype=torch.long))

    def probabilities(self):
        """``(T,)`` float64 sampling probabilities."""
        uniform = torch.full((self.num_steps, ), 1.0 / self.num_steps, dtype=torch.float64)
        if self.kind == 'uniform' or (self.loss_counts < self.loss_history.shape[1]).any():
            return uniform
        weights = self.loss_history.pow(2).mean(1).sqrt()
        weights = weights / weights.sum()
        return weights * (1 - self.uniform_prob) + self.uniform_prob / self.num_steps

    def sample(self, batch, device):
        """Timesteps ``(batch,)`` int64 and importance weights ``(batch,)`` float32."""
        probs = self.probabilities()
        t = torch.multinomial(probs, batch, replacement=True,
                              generator=self.draw_generator())
        weights = 1.0 / (self.num_steps * probs[t])
        return t.to(device), weights.float().to(device)

    @torch.no_grad()
    def update(self, t, losses):
        """Record per-image losses ``(N,)`` at timesteps ``t`` (importance sampling only)."""
        if self.kind == 'uniform':
            return
        for step, loss in zip(t.tolist(), losses.detach().double().cpu().tolist()):
            if self.loss_counts[step] == self.loss_history.shape[1]:
                self.loss_history[step] = torch.roll(self.loss_history[step], -1)
                self.loss_history[step, -1] = loss
            else:
                self.loss_history[step, self.loss_counts[step]] = loss
                self.loss_counts[step] += 1



class DDPMPretrainer(BaseModel):
    """An ADM U-Net trained to denoise (epsilon prediction; hybrid loss with learn_sigma).

    Its ``unet.*`` weights are the U-Net's guided-diffusion keys, so a checkpoint loads into
    :class:`~mmdiffssl.models.backbones.ADMBackbone` with ``checkpoint_prefix='unet.'`` (EMA
    weights when trained with mmengine's EMAHook; raw ones from ``checkpoint_key=
    'ema_state_dict'``, ``checkpoint_prefix='module.unet.'``).

    Args:
        arch (str | dict): as for ADMBackbone.
        timestep_sampler (str): 'uniform' or 'loss-second-moment'.
        seed (int): seed of the noise and timestep generators.
        data_preprocessor (dict): should map images to [-1, 1] (mean = std = 127.5); the
            first batch is checked (ValueError naming the range seen when outside
            [-1.5, 1.5]).

    Shapes: ``forward(inputs (B, C, H, W), data_samples, mode='loss')`` returns
    ``dict(loss=scalar, mse=scalar[, vb=scalar])``; ``mode='tensor'`` returns the U-Net
    output for fresh noise and timesteps.
    """

    def __init__(self, arch, timestep_sampler='uniform', seed=0, data_preprocessor=None,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.flags = adm_flags_from(arch)
        self.unet = build_adm_unet(self.flags)
        self.schedule = DiffusionSchedule(self.flags['noise_schedule'],
                                          self.flags['diffusion_steps'])
        self.objective = DDPMObjective(self.schedule, self.flags['learn_sigma'])
        self.timestep_sampler = TimestepSampler(self.schedule.num_steps, timestep_sampler, seed)
        self.noise = DiffusionNoise('fresh', seed)   # per-rank stream, rank read at each draw

    def _labels(self, data_samples, batch, device):
        if not self.flags['class_cond']:
            return None
        if data_samples is None:
            raise ValueError('a class-conditional arch needs labels (data_samples.gt_label)')
        return torch.cat([s.gt_label for s in data_samples]).to(device).view(batch)

    def loss_terms(self, x0, t, noise, y=None):
        """Per-image loss terms for given x0 ``(B, C, H, W)``, t ``(B,)`` and noise."""
        x_t = self.schedule.q_sample(x0, t, noise)
        return self.objective.losses(self.unet(x_t, t, y=y), x0, x_t, t, noise)

    def forward(self, inputs, data_samples=None, mode='loss'):
        check_pixel_range_once(self, inputs, 'DDPMPretrainer')   # first batch only
        batch = inputs.shape[0]
        t, weights = self.timestep_sampler.sample(batch, inputs.device)
        noise = self.noise.sample(inputs.shape, inputs.device, inputs.dtype)
        y = self._labels(data_samples, batch, inputs.device)
        if mode == 'tensor':
            return self.unet(self.schedule.q_sample(inputs, t, noise), t, y=y)
        if mode != 'loss':
            raise ValueError(f"mode '{mode}' is not supported: use 'loss' or 'tensor'")
        terms = self.loss_terms(inputs, t, noise, y)
        self.timestep_sampler.update(t, terms['loss'])
        out = {'loss': (terms['loss'] * weights).mean(), 'mse': terms['mse'].mean().detach()}
        if 'vb' in terms:
            out['vb'] = terms['vb'].mean().detach()
        return out
