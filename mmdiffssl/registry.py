"""Every name mmdiffssl registers, and the module that defines it.

``import mmdiffssl`` registers each name below in mmengine's *root* registry of its kind
(``MODELS``, ``DATASETS``, ...), the parent of the mmpretrain, mmdet and mmsegmentation
registries, so a config of any of those scopes finds it by ``type=``. (A scoped child
registry with ``locations`` would not be found from ``default_scope='mmdet'``: sibling
registries are not searched.) The entry is a builder that imports its module on the first
build, so importing the package imports none of mmpretrain, mmdet, mmseg, mmcv, diffusers
or transformers (``mmengine.model`` itself imports transformers when installed).

The first build of any mmdiffssl module also allow-lists mmengine's checkpoint contents for
``torch.load`` (:func:`mmdiffssl.utils.compat.allow_mmengine_checkpoints`): a process that
builds our models is one that resumes or initialises from mmengine checkpoints.

``LN2D`` is the one class registered as itself: mmcv's ``build_norm_layer`` inspects the
registered object as a class, and its module needs only torch.
"""
import importlib
import inspect

from mmengine.registry import (DATASETS, HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS, RUNNERS,
                               TRANSFORMS)

#: registry -> {registered name: defining module}
LAZY_REGISTRATIONS = {
    MODELS: {
        'ADMBackbone': 'mmdiffssl.models.backbones.adm_backbone',
        'SDBackbone': 'mmdiffssl.models.backbones.sd_backbone',
        'DiffusersUNetBackbone': 'mmdiffssl.models.backbones.diffusers_unet_backbone',
        'SDXLBackbone': 'mmdiffssl.models.backbones.sdxl_backbone',
        'DiTBackbone': 'mmdiffssl.models.backbones.dit_backbone',
        'PixArtBackbone': 'mmdiffssl.models.backbones.pixart_backbone',
        'PixelBackbone': 'mmdiffssl.models.backbones.pixel_backbone',
        'CachedFeatures': 'mmdiffssl.datasets.feature_cache',
        'DiffSSLClassifier': 'mmdiffssl.models.classifiers.diffssl_classifier',
        'DifFeedBackbone': 'mmdiffssl.models.classifiers.diffeed',
        'PooledLinearHead': 'mmdiffssl.models.heads.pooled_heads',
        'MLPHead': 'mmdiffssl.models.heads.pooled_heads',
        'CNNHead': 'mmdiffssl.models.heads.pooled_heads',
        'AttentionPoolHead': 'mmdiffssl.models.heads.attention_heads',
        'DifFormerHead': 'mmdiffssl.models.heads.attention_heads',
        'DiffSimpleFPN': 'mmdiffssl.models.necks.simple_fpn',
        'DiffMaskRCNN': 'mmdiffssl.models.detectors.mask_rcnn',
        'DiffEncoderDecoder': 'mmdiffssl.models.segmentors.encoder_decoder',
        'RepFusionDistiller': 'mmdiffssl.models.distillers.repfusion',
        'FixedTimestep': 'mmdiffssl.models.distillers.timestep_policies',
        'UniformTimestep': 'mmdiffssl.models.distillers.timestep_policies',
        'LearnedTimestepPolicy': 'mmdiffssl.models.distillers.timestep_policies',
        'DDPMPretrainer': 'mmdiffssl.models.pretrainers.ddpm',
    },
    DATASETS: {
        'CachedFeatureDataset': 'mmdiffssl.datasets.feature_cache',
        'TeacherFeatureDataset': 'mmdiffssl.datasets.teacher_cache',
    },
    TRANSFORMS: {
        'GrayToRGB': 'mmdiffssl.datasets.transforms',
        'BoxBicubicResizeEdge': 'mmdiffssl.datasets.transforms',
    },
    HOOKS: {
        'TimestepPolicyHook': 'mmdiffssl.engine.timestep_policy_hook',
        'PretrainedInitCheckHook': 'mmdiffssl.engine.pretrained_check_hook',
        'StandaloneSegVisualizationHook': 'mmdiffssl.engine.seg_visualization_hook',
    },
    OPTIM_WRAPPER_CONSTRUCTORS: {
        'LayerDecayOptimWrapperConstructor': 'mmdiffssl.engine.layer_decay_constructor',
    },
    RUNNERS: {
        'FeatureCacheRunner': 'mmdiffssl.engine.feature_cache_runner',
    },
}

#: the module of the class registered as itself (see the module docstring)
LN2D = 'mmdiffssl.models.necks.layer_norm'


def _load(module, name):
    """The class ``name`` of ``module``; the first load allow-lists mmengine's checkpoints."""
    from mmdiffssl.utils.compat import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as err:
        if not err.name or err.name.split('.')[0] == 'mmdiffssl':
            raise
        raise ModuleNotFoundError(f'{name} needs {err.name!r}, which is not installed '
                                  f'({module} imports it)', name=err.name) from err


def lazy_builder(module, name):
    """A function registered as ``name``: imports ``module`` and builds ``name(*args, **kw)``.

    Its ``load()`` returns the class itself; ``from_cfg`` is there for runners
    (``RUNNERS.build`` calls ``runner_cls.from_cfg(cfg)``).
    """
    def build(*args, **kwargs):
        return _load(module, name)(*args, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__module__ = module
    build.__doc__ = f'Build ``{module}.{name}`` (imported on the first build).'
    build.load = lambda: _load(module, name)
    build.from_cfg = lambda cfg: _load(module, name).from_cfg(cfg)
    return build


def registered_class(registry, name):
    """The class registered as ``name`` (a scope prefix such as ``'mmdet.'`` is allowed),
    imported if it is one of ours; ``None`` when nothing is registered under that name."""
    obj = registry.get(name)
    if obj is not None and not inspect.isclass(obj) and hasattr(obj, 'load'):
        return obj.load()
    return obj


def register_all():
    """Register every name of :data:`LAZY_REGISTRATIONS` (idempotent) and ``DiffLN2d``."""
    for registry, names in LAZY_REGISTRATIONS.items():
        for name, module in names.items():
            if name not in registry.module_dict:
                registry.register_module(name=name, module=lazy_builder(module, name))
    importlib.import_module(LN2D)
