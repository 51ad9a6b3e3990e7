"""Config loading and Runner construction behind ``tools/train.py`` and ``tools/test.py``.

The same code serves mmpretrain, mmdet and mmsegmentation configs: the config's
``default_scope`` decides which codebase's registries build the model, datasets and metrics.
"""
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmdiffssl.utils.dist import prepare_cpu_distributed


def add_runner_arguments(parser):
    """The options ``tools/train.py`` and ``tools/test.py`` share, as in the upstream tools."""
    parser.add_argument('--work-dir', help='the dir to save logs, models and metrics')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (xxx=yyy format)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def load_config(config, cfg_options=None, work_dir=None, launcher='none'):
    """Read a config file and apply the command-line overrides every tool shares.

    Args:
        config (str): path of an mmengine config file.
        cfg_options (dict, optional): ``--cfg-options`` key/value overrides.
        work_dir (str, optional): output folder; defaults to ``work_dirs/<config name>``.
        launcher (str): job launcher, ``'none'`` for a single process.

    Returns:
        mmengine.Config
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(config))[0])
    prepare_cpu_distributed(cfg, launcher)
    apply_feature_cache(cfg)
    apply_teacher_cache(cfg)
    return cfg


def _classification_preprocessor(cfg):
    """The data preprocessor config the model is built with (the model's, else the top-level
    one, as the Runner does), typed as mmpretrain's ``ClsDataPreprocessor`` when untyped."""
    preprocessor = dict(cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {})
    preprocessor.setdefault('type', 'mmpretrain.ClsDataPreprocessor')
    return preprocessor


def _cache_pool(cfg, cache):
    """The cache's pooling: ``feature_cache.pool``, else the head's ``pool_size``.

    A head that pools to k x k reads exactly what online training reads only from maps
    pooled to k x k: another cached pool would be re-pooled (upsampled when smaller), so a
    mismatch is refused.
    """
    import inspect

    from mmengine.registry import MODELS
    pool = cache.get('pool')
    head = cfg.model.get('head') or {}
    head_pool = head.get('pool_size')
    if head_pool is None and isinstance(head.get('type'), str):
        cls = MODELS.get(head['type'].split('.')[-1])
        param = inspect.signature(cls).parameters.get('pool_size') if cls else None
        if param is not None and param.default is not inspect.Parameter.empty:
            head_pool = param.default
    if head_pool is None:
        return pool
    if pool is None and cache.get('input_size') is None:
        return head_pool
    as_pair = (lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v))
    if pool is None or as_pair(pool) != as_pair(head_pool):
        raise ValueError(f'feature_cache.pool={pool!r} but the head {head.get("type")} pools to '
                         f'{head_pool!r}: the head would re-pool the cached maps and read '
                         'other features than online; set feature_cache.pool to the head\'s '
                         'pool_size (or leave it out to use it)')
    return pool


def apply_feature_cache(cfg):
    """The ``feature_cache`` config switch: train and test heads from cached features.

    With ``feature_cache=dict(root=..., pool=k)`` (or ``input_size=(H, W)`` instead of
    ``pool``; a head with ``pool_size`` sets ``pool`` and refuses another) in a
    classification config with a frozen backbone, every dataloader's dataset
    is wrapped in :class:`~mmdiffssl.datasets.CachedFeatureDataset` (filled on first use),
    the backbone is replaced by :class:`~mmdiffssl.datasets.CachedFeatures` and the data
    preprocessor stops normalising (the cache holds features, not pixels). The rest of the
    config (head, optimizer, schedule, metrics) is unchanged.

    The cached dataloaders read batches in the training process (``num_workers`` from
    ``feature_cache.num_workers``, default 0: a batch is one slice of a memory map, cheaper
    than handing it over from a worker process) and stack them with ``default_collate``, so
    each iteration gets one ``(B, D, 1, 1)`` tensor.
    """
    cache = cfg.get('feature_cache')
    if not cache:
        return cfg
    from mmdiffssl.datasets.feature_cache import cache_layout
    backbone = cfg.model.backbone
    if not backbone.get('frozen', True):
        raise ValueError('feature_cache needs a frozen backbone (model.backbone.frozen=True)')
    preprocessor = _classification_preprocessor(cfg)
    pool, input_size = _cache_pool(cfg, cache), cache.get('input_size')
    num_workers = cache.get('num_workers', 0)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if loader is not None:
            loader.dataset = dict(
                type='CachedFeatureDataset', dataset=loader.dataset, backbone=backbone,
                data_preprocessor=preprocessor, cache_root=cache['root'], pool=pool,
                input_size=input_size, batch_size=cache.get('batch_size', 64),
                image_key=cache.get('image_key', 'stat'))
            loader.collate_fn = dict(type='default_collate')
            loader.num_workers = num_workers
            if not num_workers:  # DataLoader refuses these options without workers
                loader.pop('persistent_workers', None)
                loader.pop('prefetch_factor', None)
    cfg.model.backbone = dict(type='CachedFeatures',
                              layout=cache_layout(backbone, pool, input_size))
    cfg.model.data_preprocessor = dict(preprocessor, mean=None, std=None, to_rgb=False)
    return cfg


def apply_teacher_cache(cfg):
    """The ``teacher_cache`` config switch: RepFusion at a fixed t with cached teacher features.

    With ``teacher_cache=dict(root=..., pool=k)`` (or ``input_size=(H, W)``; optional
    ``pipeline`` for the cached images, default the training pipeline) in a
    ``RepFusionDistiller`` config with a ``FixedTimestep`` policy, the training dataset is
    wrapped in :class:`~mmdiffssl.datasets.TeacherFeatureDataset` (the teacher's block at
    that timestep, filled on first use) and the distiller reads its targets from the samples
    (``teacher_from_cache=True``) instead of running the teacher.
    """
    cache = cfg.get('teacher_cache')
    if not cache:
        return cfg
    model = cfg.model
    if model.get('type') != 'RepFusionDistiller':
        raise ValueError('teacher_cache is for RepFusionDistiller configs, not '
                         f"{model.get('type')}")
    policy = model.get('timestep_policy', dict(type='FixedTimestep'))
    if policy.get('type') != 'FixedTimestep':
        raise ValueError(f"teacher_cache needs timestep_policy FixedTimestep (the cache holds one "
                         f"timestep), not {policy.get('type')}")
    teacher = dict(model.teacher)
    if model.get('teacher_tap'):
        teacher.update(blocks=(), taps=(model.teacher_tap, ))
    else:
        teacher['blocks'] = (model.get('teacher_block') or teacher['blocks'][0], )
    teacher['timesteps'] = (policy.get('timestep', 150), )
    preprocessor = _classification_preprocessor(cfg)
    cfg.train_dataloader.dataset = dict(
        type='TeacherFeatureDataset', dataset=cfg.train_dataloader.dataset, teacher=teacher,
        data_preprocessor=preprocessor, cache_root=cache['root'],
        teacher_pipeline=cache.get('pipeline'), pool=cache.get('pool'),
        input_size=cache.get('input_size'), batch_size=cache.get('batch_size', 64))
    model.teacher_from_cache = True
    return cfg


def enable_amp(cfg):
    """Switch the config's optimizer wrapper to mixed precision (``--amp``)."""
    if not torch.cuda.is_available():
        raise RuntimeError('--amp needs a CUDA GPU (mmengine AmpOptimWrapper asserts one); '
                           'run without --amp on CPU')
    if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def enable_visualization(cfg, show_dir):
    """``--show-dir``: the codebase's visualisation hook draws every test prediction as PNG.

    mmdet's DetVisualizationHook writes to ``test_out_dir`` (under the work dir, so an
    absolute ``show_dir`` is used as is); mmseg's SegVisualizationHook writes through the
    visualizer's backends into ``<work_dir>/<timestamp>/vis_data/vis_image``.
    """
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ValueError('--show-dir needs default_hooks.visualization in the config')
    hook.draw = True
    if hook.type.endswith('DetVisualizationHook'):
        hook.test_out_dir = show_dir
    else:
        hook.interval = 1
        cfg.visualizer.save_dir = show_dir


def set_resume(cfg, resume):
    """Apply ``--resume``: ``'auto'`` resumes the work dir's last checkpoint, a path resumes it."""
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume is not None:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume checkpoint not found: {resume}')
        cfg.resume = True
        cfg.load_from = resume


def build_runner(cfg):
    """Build the Runner named by ``cfg.runner_type`` (mmengine's Runner by default)."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
