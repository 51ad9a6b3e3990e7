"""The README's main experiment on CPU: do a pretrained diffusion U-Net's features beat a
random U-Net's and raw pixels on Fashion-MNIST? Writes one report folder and prints its headline.

    python tools/pipeline.py [--preset full|demo] [--work-dir work_dirs/pipeline] [--data D]
                             [--pretrain-iters N] [--probe-train N] ...   (see --help)

Steps: first the DDPM pretraining of the small 32x32 ADM U-Net (PRETRAIN_CFG below; its EMA
weights are probed) on ``--pretrain-threads`` threads (default 2: both cores); then two lanes,
one thread each, so both cores work and every number is deterministic:

  lane A (a second process): the random U-Net's probe (same arch, re-drawn init), then a DDIM
          sample grid of the pretrained U-Net;
  lane B: a small Fashion-MNIST classifier (for the sample numbers), the raw-pixel probe and
          the pretrained U-Net's probe.

Protocol: every probe is a linear classifier on standardised features
(mmdiffssl.analysis.fit_linear_probe). Its block, timestep and weight decay are chosen on
``--heldout`` training images that no step trains on (the last ones of the training split),
with probes fitted on the first ``--probe-train`` training images; the chosen probe is then
fitted with ``--seeds`` seeds (they order the mini-batches) and evaluated once on the test
images. The heatmap is the pretrained U-Net's held-out top-1 per (block, timestep), each cell
at its best weight decay.

The report (WORK_DIR/report.md, heatmap.png, samples.png, report.json, predictions.npz)
is rewritten by every run; what it is made from is cached by content under WORK_DIR: the
pretraining run (pretrain/<key>/, keyed by the resolved config, the data files and the
source of the training code), feature caches (feature_cache/, keyed by weights, arch, data
and settings), the classifier (classifier/<key>.pth) and the samples (samples/<key>.npy,
keyed by the checkpoint's bytes and the sampler's settings and source).
A second run with nothing changed recomputes only the probe fits and the report.

On a GPU (``--preset gpu``, what tools/device/science.sh runs): ``--device cuda --dtype bf16``
pretrains through mmengine's AmpOptimWrapper and runs the feature caches, samples and probe
fits there; ``--heads`` then trains the paper's heads (HEAD_CFGS) on the pretrained U-Net's
best held-out cell and adds their table to the report.
"""
import argparse
import copy
import functools
import json
import math
import os
import os.path as osp
import time
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import torch

PRETRAIN_CFG = 'configs/pretrain/ddpm_adm-tiny_1xb32-2000iter_fashion-mnist-32px.py'
PROBE_CFG = 'configs/diffssl/linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py'
TRAIN_IMAGES = 60000   # Fashion-MNIST's training split
# the paper's heads, trained by mmengine on the pretrained U-Net (--heads): from a feature
# cache of the best cell, DifFeed online (it runs the U-Net twice)
HEAD_CFGS = dict(linear='configs/diffssl/linear_adm-tiny_1xb16-4e_folder-32px.py',
                 attention='configs/diffssl/attention_adm-tiny_1xb16-4e_folder-32px.py',
                 difformer='configs/diffssl/difformer_adm-tiny_1xb16-4e_folder-32px.py',
                 diffeed='configs/diffssl/diffeed_adm-tiny_1xb16-4e_folder-32px.py')

# Sizes of the README's run and of `make demo`; every one is also a flag. The pretraining
# settings (--pretrain-iters, --pretrain-batch, --pretrain-lr, --ema-momentum) default to
# PRETRAIN_CFG's.
PRESETS = dict(
    full=dict(probe_train=5000, heldout=5000, test=10000, blocks=[2, 4, 6, 7, 8, 10],
              timesteps=[10, 50, 200], weight_decays=[0.0, 1e-3, 1e-2], probe_epochs=30,
              seeds=3, samples=256, sample_steps=25, classifier_train=55000,
              classifier_epochs=2, curve_points=4),
    demo=dict(pretrain_iters=100, ema_momentum=0.05, probe_train=2000, heldout=5000,
              test=10000, blocks=[4, 8], timesteps=[10, 100], weight_decays=[0.0, 1e-2],
              probe_epochs=30, seeds=3, samples=64, sample_steps=20, classifier_train=20000,
              classifier_epochs=1, curve_points=2),
    # one H200 (tools/device/science.sh; tools/device/README.md says how these were sized);
    # there the pretraining iterations (at most these) come from a timed rehearsal
    gpu=dict(pretrain_iters=20000, pretrain_batch=512, pretrain_lr=1e-3, ema_momentum=1e-3,
             probe_train=10000, heldout=5000, test=10000, blocks=[2, 4, 6, 7, 8, 9, 10, 11, 12],
             timesteps=[10, 50, 100, 200, 400], weight_decays=[0.0, 1e-2], probe_epochs=30,
             seeds=3, samples=256, sample_steps=50, classifier_train=55000,
             classifier_epochs=2, curve_points=4, device='cuda', dtype='bf16', workers=10,
             extract_batch=1000, heads=['linear', 'attention', 'difformer', 'diffeed'],
             head_epochs=8, head_batch=128))
# Where and how the steps compute, and the optional heads step; a preset may set them.
DEVICE_OPTIONS = dict(
    device=('cpu', 'where the U-Nets (pretraining, feature caches, samples) and the probes run'),
    dtype=('fp32', 'autocast dtype of the U-Nets: fp32 or bf16 (bf16 pretrains through '
           "mmengine's AmpOptimWrapper: needs --device cuda)"),
    workers=(0, 'pretraining dataloader workers (0: the config\'s)'),
    extract_batch=(64, 'images per U-Net forward when filling feature caches and sampling'),
    heads=([], 'heads trained on the pretrained U-Net\'s best held-out cell after the probes '
           f'(any of {", ".join(HEAD_CFGS)})'),
    head_epochs=(4, 'epochs of each head'),
    head_batch=(16, 'images per head training batch'))
TARGET = 3.0   # points the pretrained probe must beat both baselines by (issue #17)
POOL = 4   # each block's map is pooled 4x4 before the probe


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--preset', choices=sorted(PRESETS), default='full')
    parser.add_argument('--work-dir', default='work_dirs/pipeline')
    parser.add_argument('--data', default='data/fashion_mnist')
    parser.add_argument('--jobs', type=int, choices=(1, 2), default=2,
                        help='processes: 2 runs lane A beside lane B, 1 runs them in turn '
                        '(the same numbers: every step computes with one thread)')
    parser.add_argument('--pretrain-threads', type=int, default=2,
                        help='intra-op threads of the pretraining, which runs alone (default 2: '
                        'both cores; its numbers depend on this count)')
    for name, kind in (('pretrain_iters', int), ('pretrain_batch', int), ('pretrain_lr', float),
                       ('ema_momentum', float)):
        parser.add_argument('--' + name.replace('_', '-'), type=kind,
                            help=f'default: {PRETRAIN_CFG} (demo preset: '
                            f'{PRESETS["demo"].get(name, "the same")})')
    for name, value in PRESETS['full'].items():
        kind = type(value[0]) if isinstance(value, list) else type(value)
        parser.add_argument('--' + name.replace('_', '-'), type=kind,
                            nargs='+' if isinstance(value, list) else None,
                            help=f'default from --preset (full: {value})')
    for name, (value, text) in DEVICE_OPTIONS.items():
        kind = str if isinstance(value, (str, list)) else type(value)
        parser.add_argument('--' + name.replace('_', '-'), type=kind,
                            nargs='*' if isinstance(value, list) else None,
                            choices=list(HEAD_CFGS) if name == 'heads' else None,
                            help=f'{text} (default {value!r} or the preset\'s)')
    args = parser.parse_args(argv)
    for name, value in {**{k: v[0] for k, v in DEVICE_OPTIONS.items()},
                        **PRESETS[args.preset]}.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.device not in ('cpu', 'cuda'):
        parser.error(f'--device {args.device!r} is not cpu or cuda')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device here (use --device cpu --dtype fp32)')
    if args.dtype not in ('fp32', 'bf16') or (args.dtype == 'bf16' and args.device != 'cuda'):
        parser.error(f'--dtype {args.dtype!r} is not fp32, or bf16 with --device cuda')
    if args.probe_train + args.heldout > TRAIN_IMAGES:
        parser.error(f'--probe-train {args.probe_train} + --heldout {args.heldout} exceed the '
                     f'{TRAIN_IMAGES} training images')
    if not 1 <= args.test <= 10000:
        parser.error(f'--test {args.test} is not in [1, 10000] (the test split)')
    if args.classifier_train > TRAIN_IMAGES - args.heldout:
        parser.error(f'--classifier-train {args.classifier_train} exceeds the '
                     f'{TRAIN_IMAGES - args.heldout} training images before the held-out ones')
    if not 2 <= args.samples <= args.heldout:
        parser.error(f'--samples {args.samples} is not in [2, --heldout {args.heldout}]: the '
                     'Frechet distance needs 2, and as many held-out real images are scored')
    if args.pretrain_threads < 1:
        parser.error(f'--pretrain-threads {args.pretrain_threads} is not >= 1')
    if args.curve_points < 1:
        parser.error(f'--curve-points {args.curve_points} is not >= 1')
    return args


def one_thread():
    """Every lane computes with one intra-op thread (deterministic, and two lanes fill two
    cores)."""
    torch.set_num_threads(1)
    os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = '1'


def digest(value):
    from mmdiffssl.models.backbones.base import jsonable, key_hash
    return key_hash(jsonable(value))


def data_fingerprint(data_root):
    from mmdiffssl.datasets.fashion_mnist import FILES
    from mmdiffssl.models.backbones.base import file_checksum
    return {name: file_checksum(osp.join(data_root, name)) for name in FILES}


def code_fingerprint(*modules):
    """Checksums of the source files of ``modules`` (dotted names): a cached result of older
    code is not reused."""
    import importlib

    from mmdiffssl.models.backbones.base import file_checksum
    return {name: file_checksum(importlib.import_module(name).__file__) for name in modules}


def not_default(args, *names):
    """The device options among ``names`` that differ from their defaults (for cache keys:
    those of CPU fp32 runs stay as they were)."""
    return {name: getattr(args, name) for name in names
            if getattr(args, name) != DEVICE_OPTIONS[name][0]}


def fill_options(args):
    """How feature caches are filled: ``batch_size`` and ``device`` of
    :class:`~mmdiffssl.datasets.CachedFeatureDataset`."""
    return dict(batch_size=args.extract_batch, device=args.device)


def heldout_indices(args):
    return list(range(TRAIN_IMAGES - args.heldout, TRAIN_IMAGES))


# ---------------------------------------------------------------------------- pretraining, samples
def pretrain_config(args):
    """PRETRAIN_CFG with the flags given: data root, held-out split, iterations, batch, lr,
    EMA momentum."""
    from cli_common import load_config
    cfg = load_config(PRETRAIN_CFG)
    cfg.train_dataloader.dataset.data_root = args.data
    cfg.train_dataloader.dataset.indices = TRAIN_IMAGES - args.heldout
    if args.pretrain_iters is not None:
        cfg.train_cfg.max_iters = args.pretrain_iters
    # checkpoints along the run, for the curve of a missed target (the last one always)
    cfg.default_hooks.checkpoint.interval = math.ceil(cfg.train_cfg.max_iters /
                                                      args.curve_points)
    if args.pretrain_batch is not None:
        cfg.train_dataloader.batch_size = args.pretrain_batch
    if args.pretrain_lr is not None:
        cfg.optim_wrapper.optimizer.lr = args.pretrain_lr
    if args.ema_momentum is not None:
        cfg.custom_hooks[0].momentum = args.ema_momentum
    if args.workers:
        cfg.train_dataloader.update(num_workers=args.workers, persistent_workers=True)
    if args.device == 'cuda':
        cfg.env_cfg.cudnn_benchmark = True   # one input shape all along
    if args.dtype == 'bf16':
        from cli_common import enable_amp
        enable_amp(cfg)
        cfg.optim_wrapper.dtype = 'bfloat16'
    return cfg


def pretrain_settings(cfg):
    """What the report says about the pretraining run."""
    return dict(iters=cfg.train_cfg.max_iters, batch=cfg.train_dataloader.batch_size,
                lr=cfg.optim_wrapper.optimizer.lr, ema_momentum=cfg.custom_hooks[0].momentum)


def pretrain(args):
    """The first step: the EMA checkpoint of the pretraining run on ``--pretrain-threads``
    threads, reused when its key (resolved config, thread count, data files, training code)
    has a finished run."""
    from cli_common import build_runner
    cfg = pretrain_config(args)
    key = digest(dict(config=cfg.to_dict(), threads=args.pretrain_threads,
                      data=data_fingerprint(args.data),
                      code=code_fingerprint('mmdiffssl.models.pretrainers.ddpm',
                                            'mmdiffssl.models.ddpm_objective',
                                            'mmdiffssl.models.diffusion',
                                            'mmdiffssl.models.unets.adm')))
    work_dir = osp.join(args.work_dir, 'pretrain', key)
    ckpt = osp.join(work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
    done = osp.join(work_dir, 'done.json')
    if osp.isfile(done) and osp.isfile(ckpt):
        with open(done) as f:
            return dict(json.load(f), reused=True)
    cfg.work_dir = work_dir
    start = time.time(), time.process_time()
    torch.set_num_threads(args.pretrain_threads)
    try:
        build_runner(cfg).train()
    finally:
        one_thread()
    record = dict(checkpoint=ckpt, key=key, settings=dict(pretrain_settings(cfg),
                                                          threads=args.pretrain_threads),
                  wall_s=time.time() - start[0], cpu_s=time.process_time() - start[1])
    with open(done, 'w') as f:
        json.dump(record, f, indent=1)
    return dict(record, reused=False)


def sample(args, checkpoint):
    """Lane A's second step: ``(N, 3, 32, 32)`` uint8 DDIM samples of the pretrained U-Net
    (EMA weights), cached by the checkpoint's bytes and the sampler settings."""
    one_thread()
    from mmengine.config import Config

    from mmdiffssl.models.backbones.base import file_checksum
    from mmdiffssl.models.ddpm_objective import DDPMObjective
    from mmdiffssl.models.diffusion import DiffusionSchedule
    from mmdiffssl.models.sampling import DiffusionSampler
    from mmdiffssl.models.unets import adm_flags_from, build_adm_unet
    from mmdiffssl.utils.checkpoint import load_weights
    flags = adm_flags_from(Config.fromfile(PRETRAIN_CFG).model.arch)
    key = digest(dict(checkpoint=file_checksum(checkpoint), flags=flags, num=args.samples,
                      steps=args.sample_steps, method='ddim', seed=0,
                      code=code_fingerprint('mmdiffssl.models.sampling',
                                            'mmdiffssl.models.unets.adm'),
                      # the chunk size orders the noise draws
                      **not_default(args, 'device', 'dtype', 'extract_batch')))
    path = osp.join(args.work_dir, 'samples', key + '.npy')
    if osp.isfile(path):
        return path, True
    start = time.time(), time.process_time()
    unet = build_adm_unet(flags)
    load_weights(unet, checkpoint, prefix='unet.')
    objective = DDPMObjective(DiffusionSchedule(flags['noise_schedule'],
                                                flags['diffusion_steps']), flags['learn_sigma'])
    sampler = DiffusionSampler(unet.to(args.device).eval(), objective)  # tables follow t
    gen = torch.Generator().manual_seed(0)  # on the CPU: the same noise on every device
    size = flags['image_size']
    images = []
    for start_idx in range(0, args.samples, args.extract_batch):
        num = min(args.extract_batch, args.samples - start_idx)
        noise = torch.randn(num, 3, size, size, generator=gen).to(args.device)
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.dtype == 'bf16'):
            x = sampler.ddim(noise, generator=gen, steps=args.sample_steps).float()
        images.append(((x.clamp(-1, 1) + 1) * 127.5).round().byte().cpu())
    os.makedirs(osp.dirname(path), exist_ok=True)
    np.save(path + '.part.npy', torch.cat(images).numpy())
    os.replace(path + '.part.npy', path)
    with open(path[:-4] + '.json', 'w') as f:
        json.dump(dict(checkpoint=checkpoint, wall_s=time.time() - start[0],
                       cpu_s=time.process_time() - start[1]), f)
    return path, False


# ---------------------------------------------------------------------------- probes
def probe_config(args):
    from cli_common import load_config
    cfg = load_config(PROBE_CFG)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[name].dataset.data_root = args.data
    cfg.train_dataloader.dataset.indices = args.probe_train
    # the held-out images: the end of the training split
    cfg.val_dataloader.dataset = dict(cfg.train_dataloader.dataset,
                                      indices=heldout_indices(args))
    cfg.test_dataloader.dataset.indices = args.test
    cfg.model.backbone.dtype = args.dtype
    return cfg


@functools.lru_cache(maxsize=4)
def _split(dataset_json):
    """A built dataset of a whole split (read once per process, whatever the subsets)."""
    from mmengine.registry import DATASETS
    return DATASETS.build(json.loads(dataset_json))


def load_images(dataset_cfg):
    """``(images (N, 1, 32, 32) float in [-1, 1], labels (N,))`` of a dataset config (its
    ``indices`` a count or a list) through its pipeline: the images the U-Net sees (their
    three channels are equal)."""
    from mmdiffssl.models.backbones.base import jsonable
    dataset_cfg = dict(dataset_cfg)
    indices = dataset_cfg.pop('indices', None)
    dataset = _split(json.dumps(jsonable(dataset_cfg), sort_keys=True))
    if indices is None or isinstance(indices, int):
        indices = range(len(dataset) if indices is None else indices)
    images = torch.stack([dataset[i]['inputs'][:1] for i in indices])
    labels = torch.tensor([int(dataset.get_data_info(i)['gt_label']) for i in indices])
    return images.float() / 127.5 - 1, labels


def sample_scorer(args, cfg):
    """The sample-grid classifier (:func:`classifier`), its test top-1 (%), the ``(T, D)``
    classifier features of the test images and the scores of ``--samples`` held-out real
    images: ``(model, top1, test_feats, real)``."""
    from mmdiffssl.analysis.sample_quality import classifier_outputs, score_images
    model = classifier(args, cfg)
    test_images, test_labels = load_images(cfg.test_dataloader.dataset)
    test_probs, test_feats = classifier_outputs(model, test_images)
    top1 = float((test_probs.argmax(1) == test_labels.numpy()).mean() * 100)
    held_images = load_images(dict(cfg.val_dataloader.dataset,
                                   indices=heldout_indices(args)[:args.samples]))[0]
    return model, top1, test_feats, score_images(model, held_images, test_feats)


def classifier(args, cfg):
    """The sample-grid classifier: trained once on the first ``--classifier-train`` training
    images (never the held-out ones), cached by its settings and the data files."""
    from mmdiffssl.analysis.sample_quality import train_classifier
    settings = dict(epochs=args.classifier_epochs, lr=2e-3, batch_size=128, seed=0, width=16,
                    images=args.classifier_train)
    key = digest(dict(settings, data=data_fingerprint(args.data),
                      pipeline=cfg.train_dataloader.dataset.pipeline,
                      code=code_fingerprint('mmdiffssl.analysis.sample_quality')))
    path = osp.join(args.work_dir, 'classifier', key + '.pth')
    if osp.isfile(path):
        saved = torch.load(path, weights_only=True)
        from mmdiffssl.analysis.sample_quality import SmallClassifier
        model = SmallClassifier(10, settings['width'])
        model.load_state_dict(saved['state_dict'])
        return model.eval()
    images, labels = load_images(dict(cfg.train_dataloader.dataset,
                                      indices=settings['images']))
    model = train_classifier(images, labels, epochs=settings['epochs'], lr=settings['lr'],
                             batch_size=settings['batch_size'], seed=settings['seed'],
                             width=settings['width'])
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save(dict(state_dict=model.state_dict()), path + '.part')
    os.replace(path + '.part', path)
    return model


def select_and_test(args, train_y, held_y, cells, test, log):
    """Choose a probe on the held-out rows, then fit it with every seed and predict the test
    rows once.

    Args:
        train_y (Tensor): ``(N,)`` probe-train labels; ``held_y`` ``(M,)`` held-out labels.
        cells (dict): ``{cell: features}``, ``features()`` giving the ``(N, D)`` probe-train
            and ``(M, D)`` held-out features of that cell (a (block, t) pair, or None for
            the one feature set of the pixels).
        test (callable): ``test(cell) -> (test_x (T, D), test_y (T,))`` of the chosen cell.

    Returns:
        dict: ``heldout`` ``{cell: (top1, weight_decay)}`` (each cell at its best decay),
        ``cell``, ``weight_decay``, ``predictions`` ``(seeds, T)`` int64, ``labels`` ``(T,)``.
    """
    from mmdiffssl.analysis import fit_linear_probe, linear_probe
    heldout = {}
    for cell, features in cells.items():
        train_x, held_x = features()
        scores = [(linear_probe(train_x, train_y, held_x, held_y, epochs=args.probe_epochs,
                                weight_decay=wd, device=args.device), wd)
                  for wd in args.weight_decays]
        heldout[cell] = max(scores, key=lambda s: (s[0], -s[1]))
        log(f'  held-out {cell}: ' + ', '.join(f'wd {wd:g}: {top1:.2f}' for top1, wd in scores))
    cell = max(heldout, key=lambda c: heldout[c][0])
    weight_decay = heldout[cell][1]
    train_x, _ = cells[cell]()
    test_x, test_y = test(cell)
    predictions = []
    for seed in range(args.seeds):
        probe = fit_linear_probe(train_x, train_y, epochs=args.probe_epochs, seed=seed,
                                 weight_decay=weight_decay, num_classes=10, device=args.device)
        with torch.no_grad():
            predictions.append(probe(test_x.to(args.device)).argmax(1).cpu())
    return dict(heldout=heldout, cell=cell, weight_decay=weight_decay,
                predictions=torch.stack(predictions).numpy(), labels=test_y.numpy())


def probe_unet(args, cfg, backbone, log):
    """:func:`select_and_test` over the block x timestep grid of a frozen ADM backbone."""
    from mmdiffssl.analysis.sweep import cell_columns, cell_rows, sweep_datasets
    from mmengine.registry import DATASETS
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone = backbone
    cache_root = osp.join(args.work_dir, 'feature_cache')
    train, val = sweep_datasets(cfg, args.blocks, args.timesteps, cache_root, POOL,
                                **fill_options(args))

    def features(block, t):
        cols = cell_columns(train.layout, args.timesteps, block, t)
        return lambda: (cell_rows(train, *cols), cell_rows(val, *cols))

    cells = {(b, t): features(b, t) for b in args.blocks for t in args.timesteps}

    def test(cell):
        data = DATASETS.build(dict(
            type='CachedFeatureDataset', dataset=cfg.test_dataloader.dataset,
            backbone=dict(backbone, blocks=(cell[0], ), timesteps=(cell[1], )),
            data_preprocessor=dict(cfg.data_preprocessor, type='mmpretrain.ClsDataPreprocessor'),
            cache_root=cache_root, pool=POOL, **fill_options(args)))
        return cell_rows(data, 0, data.row_size), torch.from_numpy(data.labels)

    return select_and_test(args, torch.from_numpy(train.labels), torch.from_numpy(val.labels),
                           cells, test, log)


def probe_pixels(args, cfg, log):
    """:func:`select_and_test` on the 32x32 pixels (one of the three equal channels)."""
    train_x, train_y = load_images(cfg.train_dataloader.dataset)
    held_x, held_y = load_images(cfg.val_dataloader.dataset)

    def test(_):
        x, y = load_images(cfg.test_dataloader.dataset)
        return x.flatten(1), y

    return select_and_test(args, train_y, held_y,
                           {None: lambda: (train_x.flatten(1), held_x.flatten(1))}, test, log)


def curve(args, cfg, run, cell, weight_decay, final_top1):
    """Held-out top-1 of the pretrained probe's cell for each checkpoint along the run:
    ``[(iteration, minutes of pretraining, top1)]`` (shown when the target is missed); the
    last checkpoint's is the heatmap's ``final_top1`` (the same probe on the same rows)."""
    from mmdiffssl.analysis import linear_probe
    from mmdiffssl.analysis.sweep import cell_rows, sweep_datasets
    work_dir, iters = osp.dirname(run['checkpoint']), run['settings']['iters']
    points = []
    for it in sorted({min(iters, k * math.ceil(iters / args.curve_points))
                      for k in range(1, args.curve_points + 1)}):
        if it == iters:
            points.append((it, run['wall_s'] / 60, final_top1))
            continue
        probe_cfg = copy.deepcopy(cfg)
        probe_cfg.model.backbone = dict(cfg.model.backbone, checkpoint_prefix='unet.',
                                        checkpoint=osp.join(work_dir, f'iter_{it}.pth'))
        train, val = sweep_datasets(probe_cfg, [cell[0]], [cell[1]],
                                    osp.join(args.work_dir, 'feature_cache'), POOL,
                                    **fill_options(args))
        top1 = linear_probe(cell_rows(train, 0, train.row_size), torch.from_numpy(train.labels),
                            cell_rows(val, 0, val.row_size), torch.from_numpy(val.labels),
                            epochs=args.probe_epochs, weight_decay=weight_decay,
                            device=args.device)
        points.append((it, run['wall_s'] * it / iters / 60, top1))
    return points


# ---------------------------------------------------------------------------- heads
def head_cells(heatmap):
    """What the heads read, chosen on the held-out heatmap ``{(block, t): top1}``: the best
    cell ``(block, t)``, and DifFormer's ``(blocks, timesteps)``: the three best blocks at
    that t and the two best timesteps at that block (the paper's 3 x 3 lies around its best
    cell, block 24 at t = 150), both in ascending order."""
    block, t = max(heatmap, key=heatmap.get)
    at_t = sorted((b for b, s in heatmap if s == t), key=lambda b: -heatmap[(b, t)])
    at_block = sorted((s for b, s in heatmap if b == block), key=lambda s: -heatmap[(block, s)])
    return (block, t), (tuple(sorted(at_t[:3])), tuple(sorted(at_block[:2])))


def head_config(args, cfg, name, checkpoint, heatmap):
    """The config of head ``name`` (:data:`HEAD_CFGS`) on the pretrained U-Net's cells of
    :func:`head_cells`, with the probes' splits (train: the first ``--probe-train`` images;
    val: the held-out ones; test), ``--head-epochs`` (the paper's StepLR at a quarter of
    them), ``--head-batch``; from a feature cache, DifFeed online."""
    from cli_common import enable_amp, load_config

    from mmdiffssl.models.backbones.base import shapes_only
    from mmdiffssl.models.classifiers import mirror_block
    from mmengine.registry import MODELS
    head_cfg = load_config(HEAD_CFGS[name])
    (block, t), (blocks, timesteps) = head_cells(heatmap)
    backbone = dict(cfg.model.backbone, checkpoint=checkpoint, checkpoint_prefix='unet.',
                    blocks=blocks if name == 'difformer' else (block, ),
                    timesteps=timesteps if name == 'difformer' else (t, ))
    model = head_cfg.model
    model.head.num_classes = 10
    with shapes_only():
        unet = MODELS.build(dict(backbone))
    num_blocks = len(unet.block_table)
    if name == 'difformer':   # the cache's features know no timesteps: the head is told
        model.head.update(blocks=blocks, timesteps=timesteps)
    if name == 'diffeed':
        # the decoder blocks whose mirror encoder block lies before the read-out block
        feedback = [b for b in model.backbone.feedback_blocks
                    if mirror_block(b, num_blocks) <= block]
        if not feedback:
            raise ValueError(f'DifFeed: no feedback block of {model.backbone.feedback_blocks} '
                             f'reaches read-out block {block} (each feeds encoder block '
                             f'{num_blocks + 1} - b)')
        model.backbone = dict(model.backbone, backbone=backbone, feedback_blocks=feedback)
    else:
        model.backbone = backbone
        head_cfg.runner_type = 'FeatureCacheRunner'
        head_cfg.feature_cache = dict(root=osp.join(args.work_dir, 'feature_cache'),
                                      batch_size=args.extract_batch)
    for split in ('train', 'val', 'test'):
        loader = f'{split}_dataloader'
        head_cfg[loader] = dict(cfg[loader], batch_size=args.head_batch if split == 'train'
                                else args.extract_batch)
        if args.workers:   # DifFeed reads images (the cached heads read in-process)
            head_cfg[loader].update(num_workers=args.workers, persistent_workers=True)
    head_cfg.data_preprocessor = cfg.data_preprocessor
    head_cfg.val_evaluator = head_cfg.test_evaluator = cfg.val_evaluator
    head_cfg.train_cfg.update(max_epochs=args.head_epochs, val_interval=args.head_epochs,
                              val_begin=args.head_epochs + 1)   # validated once, after
    head_cfg.param_scheduler.step_size = max(1, round(args.head_epochs / 4))
    head_cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=args.head_epochs)
    head_cfg.work_dir = osp.join(args.work_dir, 'heads', name)
    if args.dtype == 'bf16':
        enable_amp(head_cfg)
        head_cfg.optim_wrapper.dtype = 'bfloat16'
    return head_cfg


def train_head(args, cfg, name, checkpoint, heatmap):
    """Train head ``name`` (:func:`head_config`) and evaluate it once on the held-out and
    the test images: ``dict(heldout=top1, test=top1, blocks, timesteps, wall_s)``."""
    from cli_common import build_runner
    start = time.time()
    head_cfg = head_config(args, cfg, name, checkpoint, heatmap)
    runner = build_runner(head_cfg)
    runner.train()
    heldout = runner.val()['accuracy/top1']
    test = runner.test()['accuracy/top1']
    backbone = head_cfg.model.backbone
    backbone = backbone.get('backbone', backbone)
    return dict(heldout=float(heldout), test=float(test), blocks=list(backbone['blocks']),
                timesteps=list(backbone['timesteps']), epochs=args.head_epochs,
                wall_s=time.time() - start)


def plot_curve(points, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot([p[1] for p in points], [p[2] for p in points], 'o-')
    for it, minutes, top1 in points:
        ax.annotate(f'{it} it', (minutes, top1), fontsize=7)
    ax.set_xlabel('pretraining wall time (min)')
    ax.set_ylabel('held-out top-1 (%)')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------- report
def wilson_interval(top1, n, z=1.96):
    """The binomial (Wilson score) 95% interval, in percent, of a top-1 ``top1`` (%) on
    ``n`` images."""
    p = top1 / 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [100 * (centre - half), 100 * (centre + half)]


def summarise(result):
    """Mean, std (over seeds) and the Wilson interval of the mean, from the predictions."""
    top1 = (result['predictions'] == result['labels'][None]).mean(1) * 100
    mean = float(top1.mean())
    return dict(top1=top1.tolist(), mean=mean, std=float(top1.std(ddof=1)) if len(top1) > 1
                else 0.0, interval=wilson_interval(mean, len(result['labels'])))


def save_grid(images, path, cols=8):
    """A PNG grid of ``(N, 3, H, W)`` uint8 images (at most ``cols`` x ``cols``)."""
    from PIL import Image
    images = images[:cols * cols].transpose(0, 2, 3, 1)
    rows = math.ceil(len(images) / cols)
    h, w = images.shape[1:3]
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = img
    Image.fromarray(grid).resize((cols * w * 2, rows * h * 2), Image.NEAREST).save(path)


def summaries(probes):
    """``(heatmap {(block, t): held-out top1}, summary {name: summarise() + cell and weight
    decay})`` of the probes of :func:`select_and_test`."""
    heatmap = {cell: top1 for cell, (top1, _) in probes['pretrained']['heldout'].items()}
    summary = {name: dict(summarise(r), cell=list(r['cell']) if r['cell'] else None,
                          weight_decay=r['weight_decay']) for name, r in probes.items()}
    return heatmap, summary


def margin_of(summary):
    """Points by which the pretrained probe's mean beats the better baseline."""
    return min(summary['pretrained']['mean'] - summary[n]['mean'] for n in ('random', 'pixels'))


def machine_record(argv):
    """When, where and how this run was started (for the report)."""
    import platform
    import sys
    cpu = platform.processor() or platform.machine()
    if osp.isfile('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name')), cpu)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return dict(date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), cpu=cpu, gpu=gpu,
                cores=os.cpu_count(), load_start=os.getloadavg()[0], start=time.time(),
                command=' '.join(['python', 'tools/pipeline.py'] + list(
                    sys.argv[1:] if argv is None else argv)))


def write_report(args, out, summary, probes, heatmap, samples, real, classifier_top1, timing,
                 points, machine, heads=None):
    from mmdiffssl.analysis import plot_heatmap
    run = timing['pretraining']['settings']
    names = dict(pretrained='pretrained U-Net (EMA)', random='random U-Net (re-drawn)',
                 pixels='raw pixels')
    margin = margin_of(summary)
    plot_heatmap(heatmap, osp.join(out, 'heatmap.png'),
                 title=f'pretrained U-Net, held-out top-1 (%), {args.heldout} images')
    np.savez(osp.join(out, 'predictions.npz'), labels=probes['pretrained']['labels'],
             **{name: r['predictions'] for name, r in probes.items()})
    best = max(heatmap, key=heatmap.get)
    report = dict(probes=summary, margin=margin, heatmap={f'{b},{t}': v for (b, t), v in
                                                          heatmap.items()},
                  heatmap_best=list(best), samples=samples, real=real,
                  classifier_test_top1=classifier_top1, timing=timing, curve=points, heads=heads,
                  machine=dict(machine, load_end=os.getloadavg()[0],
                               wall_s=time.time() - machine['start']),
                  settings={k: v for k, v in vars(args).items()})
    with open(osp.join(out, 'report.json'), 'w') as f:
        json.dump(report, f, indent=1)
    headline = (f'pretrained {summary["pretrained"]["mean"]:.2f}% vs random '
                f'{summary["random"]["mean"]:.2f}% vs pixels {summary["pixels"]["mean"]:.2f}% '
                f'linear-probe top-1 on {args.test} test images (margin {margin:+.2f} points)')
    lines = [
        '# Pretrained diffusion features vs random init vs pixels (Fashion-MNIST, '
        f'{machine["gpu"] if args.device == "cuda" else "CPU"})', '',
        headline, '',
        f'Pretraining ({PRETRAIN_CFG}): {run["iters"]} iterations of {run["batch"]} images, '
        f'AdamW lr {run["lr"]:g}, EMA momentum {run["ema_momentum"]:g}. Probes: linear '
        f'on standardised features (each block pooled {POOL}x{POOL}), fitted on the first '
        f'{args.probe_train} training images; block, timestep and weight decay chosen on '
        f'{args.heldout} held-out training images; {args.seeds} seeds (mini-batch order); '
        f'test set used once.', '', f'Run: {machine["date"]} on {machine["cpu"]} '
        f'({machine["cores"]} cores, load average {machine["load_start"]:.1f} at the start, '
        f'{os.getloadavg()[0]:.1f} at the end), pretraining on {run["threads"]} threads, then '
        f'one thread per lane' + (f', U-Nets and probes on {machine["gpu"]} ({args.dtype})'
                                  if args.device == 'cuda' else '')
        + f', {args.jobs} lane(s), {time.time() - machine["start"]:.0f} s '
        f'wall: `{machine["command"]}`', '',
        '| features | chosen (held-out) | test top-1 (%), mean +- std | 95% interval |',
        '| --- | --- | --- | --- |']
    for name, s in summary.items():
        chosen = (f'block {s["cell"][0]}, t={s["cell"][1]}, ' if s['cell'] else '') + \
            f'wd {s["weight_decay"]:g}'
        lines.append(f'| {names[name]} | {chosen} | {s["mean"]:.2f} +- {s["std"]:.2f} | '
                     f'{s["interval"][0]:.2f}-{s["interval"][1]:.2f} |')
    lines += ['', f'## Block x timestep (held-out top-1; best: block {best[0]}, t={best[1]}, '
              f'{heatmap[best]:.2f}%)', '', '![heatmap](heatmap.png)', '',
              f'## Samples ({samples["num_images"]} DDIM samples, {args.sample_steps} steps; '
              'first 64 shown)', '', '![samples](samples.png)', '',
              f'Scored by a small CNN ({classifier_top1:.2f}% test top-1) against '
              f'{real["num_images"]} held-out real images; Fréchet distance in its feature '
              f'space to the {args.test} test images.', '',
              '| images | mean max-softmax | entropy of predicted classes (nats, max '
              f'{math.log(10):.2f}) | Fréchet distance |', '| --- | --- | --- | --- |']
    for name, s in (('samples', samples), ('real (held-out)', real)):
        lines.append(f'| {name} | {s["confidence"]:.3f} | {s["class_entropy"]:.3f} | '
                     f'{s["frechet"]:.2f} |')
    if points:
        plot_curve(points, osp.join(out, 'curve.png'))
        lines += ['', f'## Target missed (margin {margin:+.2f} < {TARGET:g} points): held-out '
                  f'top-1 of block {summary["pretrained"]["cell"][0]}, '
                  f't={summary["pretrained"]["cell"][1]} along the pretraining', '',
                  '![curve](curve.png)', '', '| iteration | minutes | held-out top-1 (%) |',
                  '| --- | --- | --- |']
        lines += [f'| {it} | {minutes:.1f} | {top1:.2f} |' for it, minutes, top1 in points]
    if heads:
        lines += ['', f'## Heads on the pretrained U-Net (best held-out cell: block {best[0]}, '
                  f't={best[1]}; one seed)', '', '| head | blocks | timesteps | epochs | '
                  'held-out top-1 (%) | test top-1 (%) |', '| --- | --- | --- | --- | --- | --- |']
        lines += [f'| {name} | {", ".join(map(str, h["blocks"]))} | '
                  f'{", ".join(map(str, h["timesteps"]))} | {h["epochs"]} | {h["heldout"]:.2f} | '
                  f'{h["test"]:.2f} |' for name, h in heads.items()]
    lines += ['', '## Time', '', '| step | wall (s) | CPU (s) | cached |',
              '| --- | --- | --- | --- |']
    for name, t in timing.items():
        lines.append(f'| {name} | {t["wall_s"]:.0f} | {t.get("cpu_s", float("nan")):.0f} | '
                     f'{t.get("reused", False)} |')
    with open(osp.join(out, 'report.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return headline


class InlineExecutor:
    """``submit`` runs the call at once in this process (``--jobs 1``)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        future = Future()
        future.set_result(fn(*args))
        return future


def log(msg):
    print(f'== [{time.strftime("%H:%M:%S")}] {msg}', flush=True)


def lane_setup():
    """What every lane's process needs: one thread, mmdiffssl's modules registered and
    mmpretrain's scope (the probe configs' default)."""
    one_thread()
    from mmengine.registry import init_default_scope

    import mmdiffssl  # noqa: F401  (registers mmdiffssl's modules)
    init_default_scope('mmpretrain')


def timed(fn, *args):
    """``(fn(*args), {'wall_s', 'cpu_s'})``: a step and its wall and CPU seconds."""
    start = time.time(), time.process_time()
    result = fn(*args)
    return result, dict(wall_s=time.time() - start[0], cpu_s=time.process_time() - start[1])


def main(argv=None):
    args = parse_args(argv)
    machine = machine_record(argv)
    lane_setup()
    from mmdiffssl.analysis.sample_quality import score_images
    from mmdiffssl.datasets import prepare_fashion_mnist

    prepare_fashion_mnist(args.data)
    out = args.work_dir
    os.makedirs(out, exist_ok=True)
    cfg = probe_config(args)
    arch = dict(cfg.model.backbone)
    log(f'pretraining ({args.pretrain_threads} threads)')
    run = pretrain(args)
    timing = dict(pretraining=run)
    pretrained = dict(arch, checkpoint=run['checkpoint'], checkpoint_prefix='unet.')
    lanes = (ProcessPoolExecutor(1, mp_context=get_context('spawn'), initializer=lane_setup)
             if args.jobs == 2 else InlineExecutor())
    with lanes as lane_a:
        log('lane A: random U-Net probe, then samples' + (' (in a second process)'
                                                         if args.jobs == 2 else ''))
        random_probe = lane_a.submit(timed, probe_unet, args, cfg,
                                     dict(arch, random_init='redraw'), log)
        sampling = lane_a.submit(sample, args, run['checkpoint'])
        (model, classifier_top1, test_feats, real), timing['classifier'] = timed(
            sample_scorer, args, cfg)
        log(f'lane B: classifier {classifier_top1:.2f}% test top-1; pixel probe')
        probes = {}
        probes['pixels'], timing['pixel probe'] = timed(probe_pixels, args, cfg, log)
        log('lane B: pretrained U-Net probe')
        probes['pretrained'], timing['pretrained probe'] = timed(probe_unet, args, cfg,
                                                                 pretrained, log)
        probes['random'], timing['random probe'] = random_probe.result()
        samples_path, reused = sampling.result()
    probes = {name: probes[name] for name in ('pixels', 'random', 'pretrained')}
    with open(samples_path[:-4] + '.json') as f:
        timing['samples'] = dict(json.load(f), reused=reused)
    images = np.load(samples_path)
    save_grid(images, osp.join(out, 'samples.png'))
    samples = score_images(model, torch.from_numpy(images).float() / 127.5 - 1, test_feats)
    heatmap, summary = summaries(probes)
    heads = {}
    for name in args.heads:
        log(f'head: {name}')
        heads[name] = train_head(args, cfg, name, run['checkpoint'], heatmap)
        timing[f'head {name}'] = dict(wall_s=heads[name]['wall_s'])
    points = None
    if margin_of(summary) < TARGET:
        log(f'margin below {TARGET:g} points: held-out top-1 along the pretraining')
        best = probes['pretrained']['cell']
        points, timing['curve'] = timed(curve, args, cfg, run, best,
                                        probes['pretrained']['weight_decay'], heatmap[best])
    headline = write_report(args, out, summary, probes, heatmap, samples, real,
                            classifier_top1, timing, points, machine, heads)
    log('done')
    print(headline)
    print(f'report: {osp.join(out, "report.md")} (heatmap.png, samples.png, report.json)')


if __name__ == '__main__':
    main()
