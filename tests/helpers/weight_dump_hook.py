"""A test hook: every rank saves its model weights at the end of training."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class WeightDumpHook(Hook):
    """Save ``rank{r}_weights.pth`` (the unwrapped model's state dict) into the work dir."""

    def after_run(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        torch.save(model.state_dict(), osp.join(runner.work_dir, f'rank{get_rank()}_weights.pth'))
