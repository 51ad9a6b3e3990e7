"""Run under torchrun (CPU, gloo): fresh noise of models built BEFORE the process group.

    python -m torch.distributed.run --nproc_per_node 2 noise_ranks.py straight|resume WORK_DIR

Builds an ADMBackbone (noise='fresh') and a DDPMPretrainer as a model would be built before
``init_process_group``, then draws three training batches of noise and timesteps.
``straight`` saves a checkpoint after them (mmengine's save_checkpoint of rank 0's
``state_dict()``, as the Runner saves on rank 0 only) and draws three more; ``resume`` loads
that checkpoint into freshly built models (every rank, mmengine's load_checkpoint) and draws
three. Each rank writes ``rank{r}_{mode}.pt``: the list of draws.
"""
import os.path as osp
import sys

import torch
import torch.distributed as dist
from mmengine.dist import get_rank
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint, weights_to_cpu
from torch import nn

import mmdiffssl  # noqa: F401  (registers the models, allow-lists mmengine's objects)
from mmdiffssl.models.backbones import ADMBackbone
from mmdiffssl.models.pretrainers import DDPMPretrainer

TINY = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult='1,2',
            attention_resolutions='8', num_head_channels=16)


def build():
    return nn.ModuleDict(dict(
        backbone=ADMBackbone(arch=TINY, blocks=(3, ), noise='fresh', noise_seed=5,
                             frozen=False),
        pretrainer=DDPMPretrainer(TINY, seed=7))).train()


def draw(model):
    noise = model['backbone'].noise.sample((2, 3, 4, 4), 'cpu', torch.float32)
    pre_noise = model['pretrainer'].noise.sample((2, 3, 4, 4), 'cpu', torch.float32)
    t, _ = model['pretrainer'].timestep_sampler.sample(4, 'cpu')
    return noise, pre_noise, t


def main(mode, work_dir):
    init_default_scope('mmpretrain')
    model = build()   # before the process group exists, as get_rank() reads 0 here
    assert get_rank() == 0 and not dist.is_initialized()
    dist.init_process_group('gloo')
    ckpt = osp.join(work_dir, 'draws_3.pth')
    draws = []
    if mode == 'straight':
        draws = [draw(model) for _ in range(3)]
        if dist.get_rank() == 0:   # as mmengine's Runner.save_checkpoint (master only)
            save_checkpoint(dict(state_dict=weights_to_cpu(model.state_dict())), ckpt)
        dist.barrier()
        draws += [draw(model) for _ in range(3)]
    else:
        load_checkpoint(model, ckpt, map_location='cpu', strict=True)
        draws = [draw(model) for _ in range(3)]
    torch.save(draws, osp.join(work_dir, f'rank{dist.get_rank()}_{mode}.pt'))
    dist.destroy_process_group()


if __name__ == '__main__':
    main(*sys.argv[1:])
