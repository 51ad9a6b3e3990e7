"""TimestepPolicyHook: decays a learned timestep policy's entropy bonus and logs its choices."""
import json
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper


class TimestepPolicyHook(Hook):
    """For a model with a learned ``timestep_policy`` (``RepFusionDistiller``).

    Before each training iteration the policy's ``entropy_coef`` is set to its initial value
    times ``max(0, 1 - progress / decay_end)``, with progress in epochs (``by_epoch``) or
    iterations, so the bonus reaches zero at ``decay_end`` (RepFusion: 0.1 to 0 by epoch 100);
    the value is logged as ``entropy_coef``. After each epoch (or every ``interval``
    iterations) the policy's mean distribution over its candidate timesteps since the last
    report is appended as one JSON line to ``<work_dir>/<out_file>`` (with the number of
    epochs and iterations done) and its most probable timesteps are logged. Models without a learned policy are left alone.

    Args:
        decay_end (int): epoch (or iteration) at which the entropy bonus reaches zero.
        by_epoch (bool): count ``decay_end`` and reports in epochs, else in iterations.
        interval (int): report every ``interval`` epochs (or iterations).
        out_file (str): JSON-lines file in the work dir; None writes none.
        top_k (int): how many timesteps the log line names.
    """

    priority = 'NORMAL'

    def __init__(self, decay_end=100, by_epoch=True, interval=1,
                 out_file='timestep_policy.jsonl', top_k=3):
        if decay_end <= 0:
            raise ValueError(f'decay_end must be positive, got {decay_end}')
        self.decay_end, self.by_epoch, self.interval = decay_end, by_epoch, interval
        self.out_file, self.top_k = out_file, top_k
        self.initial_coef = None

    @staticmethod
    def _policy(runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        policy = getattr(model, 'timestep_policy', None)
        return policy if getattr(policy, 'learned', False) else None

    def before_train(self, runner):
        policy = self._policy(runner)
        if policy is not None:
            self.initial_coef = policy.entropy_coef

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        policy = self._policy(runner)
        if policy is None:
            return
        progress = runner.epoch if self.by_epoch else runner.iter
        policy.entropy_coef = self.initial_coef * max(0.0, 1.0 - progress / self.decay_end)
        runner.message_hub.update_scalar('train/entropy_coef', policy.entropy_coef)

    def after_train_epoch(self, runner):
        if self.by_epoch and self.every_n_epochs(runner, self.interval):
            self._report(runner, epochs_done=runner.epoch + 1, iters_done=runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not self.by_epoch and self.every_n_train_iters(runner, self.interval):
            self._report(runner, epochs_done=runner.epoch, iters_done=runner.iter + 1)

    def _report(self, runner, epochs_done, iters_done):
        policy = self._policy(runner)
        probs = policy.pop_mean_probs() if policy is not None else None
        if probs is None:
            return
        timesteps = policy.candidates()
        mean_t = float(sum(p * t for p, t in zip(probs.tolist(), timesteps)))
        top = probs.topk(min(self.top_k, len(timesteps)))
        named = ', '.join(f't={timesteps[i]}: {p:.3f}'
                          for p, i in zip(top.values.tolist(), top.indices.tolist()))
        runner.logger.info(f'timestep policy after {epochs_done} epochs, {iters_done} iters: '
                           f'mean t {mean_t:.1f}; most probable {named}')
        if self.out_file and is_main_process():
            record = dict(epoch=epochs_done, iter=iters_done, mean_t=mean_t,
                          entropy_coef=policy.entropy_coef, timesteps=list(timesteps),
                          probs=[round(p, 6) for p in probs.tolist()])
            with open(osp.join(runner.work_dir, self.out_file), 'a') as f:
                f.write(json.dumps(record) + '\n')
