"""A test hook: every rank records the fresh noise and timesteps its model draws."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class NoiseRecordHook(Hook):
    """Wrap the model's ``noise.sample`` and ``timestep_sampler.sample`` (DDPMPretrainer) to
    record, per training iteration, the drawn noise and timesteps; ``after_run`` saves
    ``{iteration: (noise, timesteps)}`` as ``rank{r}_draws.pt`` in the work dir."""

    def before_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self.draws, self.current = {}, {}
        noise_sample, t_sample = model.noise.sample, model.timestep_sampler.sample

        def record_noise(*args, **kwargs):
            out = noise_sample(*args, **kwargs)
            self.current['noise'] = out.detach().cpu().clone()
            return out

        def record_t(*args, **kwargs):
            t, weights = t_sample(*args, **kwargs)
            self.current['t'] = t.detach().cpu().clone()
            return t, weights

        model.noise.sample, model.timestep_sampler.sample = record_noise, record_t

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.draws[runner.iter] = (self.current.pop('noise'), self.current.pop('t'))

    def after_run(self, runner):
        torch.save(self.draws, osp.join(runner.work_dir, f'rank{get_rank()}_draws.pt'))
