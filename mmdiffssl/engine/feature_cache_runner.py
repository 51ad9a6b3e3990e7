"""``FeatureCacheRunner``: mmengine's Runner training and testing from feature caches.

A cached variant of a config is ordinary config, a child of the online one::

    _base_ = ['./linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py']
    runner_type = 'FeatureCacheRunner'
    feature_cache = dict(root='data/feature_cache')

``runner_type`` is honoured by the three upstream ``tools/train.py`` and ``tools/test.py``
(they build the runner with ``RUNNERS.build(cfg)``), by ours and by ``RUNNERS.build`` in
Python. The runner rewrites the parts it is given (datasets, backbone, data preprocessor,
collate function, workers: :func:`with_feature_cache`, :func:`with_teacher_cache`) and keeps
the config as written (``runner.cfg``, the copy dumped in the work dir and stored in
checkpoints): that config runs again as it is, and its model and pipelines are the online
ones, which is what an inferencer needs to run new images.
"""
import copy

from mmengine.config import Config
from mmengine.runner import Runner

from mmdiffssl.models.input_range import model_preprocessor
from mmdiffssl.registry import registered_class

#: the config keys this runner reads
CACHE_KEYS = ('feature_cache', 'teacher_cache')
#: the dataloaders a feature cache wraps
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def cache_pool(cfg, cache):
    """The cache's pooling: ``feature_cache.pool``, else the head's ``pool_size``.

    A head that pools to k x k reads exactly what online training reads only from maps
    pooled to k x k: another cached pool would be re-pooled (upsampled when smaller), so a
    mismatch is refused.
    """
    import inspect

    from mmengine.registry import MODELS
    pool = cache.get('pool')
    head = cfg['model'].get('head') or {}
    head_pool = head.get('pool_size')
    if head_pool is None and isinstance(head.get('type'), str):
        with MODELS.switch_scope_and_registry(None) as registry:
            cls = registered_class(registry, head['type'])
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


def with_feature_cache(cfg):
    """Classification parts that train and test a head from cached features.

    With ``feature_cache=dict(root=..., pool=k)`` (or ``input_size=(H, W)`` instead of
    ``pool``; a head with ``pool_size`` sets ``pool`` and refuses another) and a frozen
    backbone, every dataloader's dataset is wrapped in
    :class:`~mmdiffssl.datasets.CachedFeatureDataset` (filled on first use), the backbone is
    replaced by :class:`~mmdiffssl.datasets.CachedFeatures` and the data preprocessor stops
    normalising (the cache holds features, not pixels). Head, optimizer, schedule and metrics
    are unchanged.

    The cached dataloaders read batches in the training process (``num_workers`` from
    ``feature_cache.num_workers``, default 0: a batch is one slice of a memory map, cheaper
    than handing it over from a worker process) and stack them with ``default_collate``, so
    each iteration gets one ``(B, D, 1, 1)`` tensor.

    Args:
        cfg (Config): ``model``, the dataloaders, optional ``data_preprocessor`` and
            ``feature_cache``; rewritten in place.

    Returns:
        Config: ``cfg``.
    """
    from mmdiffssl.datasets.feature_cache import cache_layout
    cache = cfg.feature_cache
    backbone = cfg.model.backbone
    if not backbone.get('frozen', True):
        raise ValueError('feature_cache needs a frozen backbone (model.backbone.frozen=True)')
    preprocessor = model_preprocessor(cfg)
    pool, input_size = cache_pool(cfg, cache), cache.get('input_size')
    num_workers = cache.get('num_workers', 0)
    for name in LOADERS:
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


def with_teacher_cache(cfg):
    """RepFusion parts that read the teacher's features at a fixed t from a disk cache.

    With ``teacher_cache=dict(root=..., pool=k)`` (or ``input_size=(H, W)``; optional
    ``pipeline`` for the cached images, default the training pipeline) in a
    ``RepFusionDistiller`` config with a ``FixedTimestep`` policy, the training dataset is
    wrapped in :class:`~mmdiffssl.datasets.TeacherFeatureDataset` (the teacher's block or
    tap at that timestep, filled on first use) and the distiller reads its targets from the
    samples (``teacher_from_cache=True``) instead of running the teacher.

    Args:
        cfg (Config): ``model``, ``train_dataloader``, optional ``data_preprocessor`` and
            ``teacher_cache``; rewritten in place.

    Returns:
        Config: ``cfg``.
    """
    cache = cfg.teacher_cache
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
    cfg.train_dataloader.dataset = dict(
        type='TeacherFeatureDataset', dataset=cfg.train_dataloader.dataset, teacher=teacher,
        data_preprocessor=model_preprocessor(cfg), cache_root=cache['root'],
        teacher_pipeline=cache.get('pipeline'), pool=cache.get('pool'),
        input_size=cache.get('input_size'), batch_size=cache.get('batch_size', 64))
    model.teacher_from_cache = True
    return cfg


def with_caches(parts):
    """``parts`` (a dict of Runner arguments plus the cache keys) with every cache applied.

    Raises:
        ValueError: neither ``feature_cache`` nor ``teacher_cache`` is set.
    """
    parts = Config(copy.deepcopy(dict(parts)))
    if not any(parts.get(key) for key in CACHE_KEYS):
        raise ValueError("runner_type='FeatureCacheRunner' needs feature_cache=dict(root=...) "
                         'or teacher_cache=dict(root=...) in the config; without a cache use '
                         "mmengine's Runner (leave runner_type out)")
    if parts.get('feature_cache'):
        with_feature_cache(parts)
    if parts.get('teacher_cache'):
        with_teacher_cache(parts)
    return parts


class FeatureCacheRunner(Runner):
    """mmengine's ``Runner`` whose model and dataloaders read the config's feature caches.

    Same arguments as ``Runner``; ``cfg`` (required) supplies ``feature_cache`` and/or
    ``teacher_cache`` and is kept unchanged as ``runner.cfg``. The model, dataloaders and
    data preprocessor given are rewritten by :func:`with_caches` before the Runner is set
    up; everything else is the Runner's.
    """

    def __init__(self, model, *, cfg, train_dataloader=None, val_dataloader=None,
                 test_dataloader=None, data_preprocessor=None, **kwargs):
        parts = with_caches(dict(
            model=model, train_dataloader=train_dataloader, val_dataloader=val_dataloader,
            test_dataloader=test_dataloader, data_preprocessor=data_preprocessor,
            **{key: cfg.get(key) for key in CACHE_KEYS}))
        super().__init__(model=parts.model, train_dataloader=parts.train_dataloader,
                         val_dataloader=parts.val_dataloader,
                         test_dataloader=parts.test_dataloader,
                         data_preprocessor=parts.data_preprocessor, cfg=cfg, **kwargs)
