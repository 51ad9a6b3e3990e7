"""Distributed launch helpers shared by ``tools/train.py`` and ``tools/test.py``."""
import os

import torch
import torch.distributed as torch_dist


def prepare_cpu_distributed(cfg, launcher):
    """Make a ``--launcher pytorch`` run work on machines without a GPU.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and wraps the model with
    ``device_ids=[LOCAL_RANK]``; both fail on CPU. When no GPU is visible this initialises
    the process group with the gloo backend itself (mmengine then skips its own init) and
    wraps the model with ``device_ids=None``. On GPU machines it does nothing.

    Args:
        cfg (mmengine.Config): the run's config, changed in place.
        launcher (str): 'none', 'pytorch', 'slurm' or 'mpi'.
    """
    if launcher == 'none' or torch.cuda.is_available() or torch_dist.is_initialized():
        return
    if launcher != 'pytorch':
        raise ValueError(f"launcher '{launcher}' without a GPU is not supported; "
                         "use '--launcher pytorch' (torchrun) for CPU runs")
    torch_dist.init_process_group(backend='gloo', rank=int(os.environ['RANK']),
                                  world_size=int(os.environ['WORLD_SIZE']))
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
