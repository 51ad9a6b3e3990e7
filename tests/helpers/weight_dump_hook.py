"""A test hook: every rank saves its model weights at the end of training."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class WeightDumpHook(Hook):
    """Save ``rank{r}_weights.pth`` (the unwrapped model's parameters) into the work dir.

    Buffers are left out: with mmengine's default ``broadcast_buffers=False`` each rank keeps
    BatchNorm statistics of its own data.
    """

    def after_run(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        torch.save({k: p.detach() for k, p in model.named_parameters()}, osp.join(runner.work_dir, f'rank{get_rank()}_weights.pth'))
