"""Training-step time and peak memory of the Mask R-CNN / UPerNet configs (synthetic data).

Used by ``tools/device/dense.py`` (device run 2, issue 22: Mask R-CNN with adm-256-uncond
at 1024 x 1024 batch 2, frozen and fine-tuned with checkpointing; UPerNet at 512 x 512)
and by ``tests/test_dense/test_dense_gpu.py``; both also run it on the CPU with a small
U-Net.

The model is built from the config as is (full adm-256-uncond unless ``arch`` is given),
without ``checkpoint=`` (random re-drawn weights: same compute), with the config's own
optimizer wrapper (so AMP configs run AMP, unless ``fp32``), and trained on one synthetic
batch of random pixels (mmdet: ``demo_mm_inputs`` with 10 boxes and masks per image;
mmseg: random label maps) for ``warmup + steps`` iterations. Peak memory is
``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` over all of them.
"""
import copy
import gc
import importlib
import os.path as osp
import statistics
import time

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope

from mmdiffssl.models.backbones import ADMBackbone
from mmdiffssl.models.backbones.base import shapes_only

GIB = 2**30


def _table(arch):
    with shapes_only():
        return ADMBackbone(arch=arch, blocks='all', prune=False).block_table


def model_cfg_for(cfg, scope, arch=None):
    """The config's model without weights; with ``arch``, the U-Net is replaced (the same
    blocks by stride) and the neck/heads' in_channels follow it."""
    model = copy.deepcopy(cfg.model)
    bb = model.backbone
    bb.checkpoint = None
    bb.random_init = 'redraw'
    if arch is None:
        return model
    full = _table(bb.arch)
    strides = [full.row(b).stride for b in full.resolve(bb.blocks, (4, 8, 16, 32))]
    small = _table(arch)
    bb.arch = dict(arch)
    if bb.blocks != 'pyramid':
        bb.blocks = list(small.pyramid(strides))
    channels = [small.row(b).channels for b in small.resolve(bb.blocks, (4, 8, 16, 32))]
    if scope == 'mmdet':
        model.neck.in_channels = channels if model.neck.type == 'FPN' else channels[0]
    else:
        model.decode_head.in_channels = channels
        model.auxiliary_head.in_channels = channels[model.auxiliary_head.in_index]
    return model


def synthetic_batch(scope, batch, size, generator):
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        torch.manual_seed(int(torch.randint(0, 2**31, (1, ), generator=generator)))
        return demo_mm_inputs(batch_size=batch, image_shapes=[(3, size, size)] * batch,
                              num_items=[10] * batch, num_classes=80, with_mask=True)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8,
                                    generator=generator))
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 150, (1, size, size), generator=generator))
        sample.set_metainfo(dict(img_shape=(size, size), ori_shape=(size, size),
                                 pad_shape=(size, size)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def fp32_optim_wrapper(cfg):
    """``cfg`` (an ``optim_wrapper`` config) without AMP: ``AmpOptimWrapper`` asserts a GPU."""
    cfg = copy.deepcopy(cfg)
    if cfg.get('type') == 'AmpOptimWrapper':
        cfg.type = 'OptimWrapper'
        for key in ('dtype', 'loss_scale', 'use_fsdp'):
            cfg.pop(key, None)
    return cfg


def measure_train_step(config, device='cuda', batch=2, size=None, steps=10, warmup=3,
                       arch=None, backbone=None, accumulate=1, fp32=False,
                       cfg_options=None):
    """Seconds per training iteration and peak GPU memory of ``config``.

    Args:
        config (str): config path.
        device (str): 'cuda' or 'cpu'.
        batch (int): images per ``train_step`` (the configs' per-GPU batch is 2).
        size (int, optional): square image side; default 1024 (mmdet) or 512 (mmseg).
        steps, warmup (int): timed and untimed iterations.
        arch (dict, optional): replace the U-Net (CPU dry runs).
        backbone (dict, optional): backbone overrides, e.g. ``dict(trainable_from=19)``.
        accumulate (int): ``train_step`` calls per iteration (the optimizer's
            ``accumulative_counts``): batch 1 x 2 is the effective batch 2 of one GPU.
        fp32 (bool): run an AMP config in fp32 (backbone and optimizer wrapper), as a CPU
            must.
        cfg_options (dict, optional): merged into the config first (``--cfg-options``
            style keys, e.g. ``{'model.train_cfg.rcnn.sampler.num': 64}``).

    Returns:
        dict: config, device, batch, accumulate, size, backbone, s_per_iter (median of the
        timed iterations), first_iter_s, build_s, peak_gib / reserved_gib
        (``max_memory_allocated`` / ``max_memory_reserved``; None on CPU),
        trainable_params, backbone_trainable_params.
    """
    if batch < 1 or accumulate < 1 or steps < 1:
        raise ValueError(f'batch, accumulate and steps must be >= 1, got {batch}, '
                         f'{accumulate}, {steps}')
    build_start = time.perf_counter()
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(cfg_options or {})
    scope = cfg.default_scope
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    init_default_scope(scope)
    size = size or (1024 if scope == 'mmdet' else 512)
    model_cfg = model_cfg_for(cfg, scope, arch)
    model_cfg.backbone.update(backbone or {})
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    if fp32:
        model_cfg.backbone.dtype = 'fp32'
        optim_cfg = fp32_optim_wrapper(optim_cfg)
    if accumulate > 1:
        optim_cfg.accumulative_counts = accumulate
    # the configs pad every training batch to 1024 x 1024 (mmdet) / 512 x 512 (mmseg)
    pre = model_cfg.data_preprocessor
    if scope == 'mmdet':
        for aug in pre.get('batch_augments') or []:
            if aug.get('type') == 'BatchFixedSizePad':
                aug['size'] = (size, size)
    elif pre.get('size'):
        pre['size'] = (size, size)
    cuda = device.startswith('cuda')
    if cuda:  # what an earlier (failed) measurement left
        gc.collect()
        torch.cuda.empty_cache()
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.to(device).train()
    optim_wrapper = build_optim_wrapper(model, optim_cfg)
    data = synthetic_batch(scope, batch, size, torch.Generator().manual_seed(0))
    build_s = time.perf_counter() - build_start
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    try:
        for _ in range(warmup + steps):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(accumulate):
                model.train_step(copy.copy(data), optim_wrapper)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        result = dict(
            config=osp.basename(config),
            device=torch.cuda.get_device_name() if cuda else 'cpu',
            batch=batch, accumulate=accumulate, size=size, backbone=backbone or {},
            fp32=fp32, s_per_iter=statistics.median(times[warmup:]), first_iter_s=times[0],
            build_s=build_s,
            peak_gib=torch.cuda.max_memory_allocated() / GIB if cuda else None,
            reserved_gib=torch.cuda.max_memory_reserved() / GIB if cuda else None,
            trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
            backbone_trainable_params=sum(p.numel() for p in model.backbone.parameters()
                                          if p.requires_grad))
    finally:
        del model, optim_wrapper, data
        if cuda:
            gc.collect()
            torch.cuda.empty_cache()
    return result
