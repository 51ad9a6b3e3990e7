"""Every config under configs/ loads, names registered components and builds its model.

For each config (any codebase; skipped when its codebase is not installed):

1. the model at full size is built on the meta device (no memory, no checkpoint): this runs
   every constructor, and the derivation of head/neck shapes from the backbone, at the real
   widths;
2. datasets, transforms and metrics of the dataloaders/evaluators are registered in the
   config's scope;
3. a shrunk copy is built on CPU and run once: diffusion U-Nets whose presets are wide are
   rebuilt with ``num_channels=32`` (block numbering unchanged) in fp32; the head's
   ``in_channels`` follow from the shrunk backbone, its ``in_sizes`` (derived at the arch's
   native resolution) are scaled to the test input, and the forward runs at 64x64 (32x32
   for archs of that size). mmpretrain models run whole ('tensor' mode); for mmdet/mmseg
   models, whose necks would need more rewiring, the shrunk backbone runs alone.
"""
import copy
import glob
import importlib
import importlib.util
import os.path as osp

import pytest
import torch

from conftest import ROOT

from mmengine.config import Config  # noqa: E402
from mmengine.registry import (DATASETS, METRICS, MODELS, TRANSFORMS,  # noqa: E402
                               init_default_scope)

import mmdiffssl  # noqa: E402,F401
import mmdiffssl.models.detectors  # noqa: E402,F401  (until mmdiffssl.models imports them)
import mmdiffssl.models.segmentors  # noqa: E402,F401
from mmdiffssl.models.derived_shapes import backbone_shapes, derive_cls_head  # noqa: E402
from mmdiffssl.models.unets import adm_flags_from  # noqa: E402

CONFIGS = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                 if f'{osp.sep}_base_{osp.sep}' not in p)
SMALL_CHANNELS = 32
SMALL_INPUT = 64
DIFFUSION_BACKBONES = ('ADMBackbone', )
# Backbones whose configs name local weights folders that tests do not have: covered by
# tests/test_configs/test_sd_configs.py and test_transformer_configs.py (tiny random folders,
# meta-device real widths).
WEIGHT_FOLDER_BACKBONES = ('SDBackbone', 'DiffusersUNetBackbone', 'SDXLBackbone', 'DiTBackbone',
                           'PixArtBackbone')


def config_id(path):
    return osp.relpath(path, osp.join(ROOT, 'configs'))


def load(path):
    cfg = Config.fromfile(path)
    scope = cfg.get('default_scope') or 'mmengine'
    if scope != 'mmengine':
        if importlib.util.find_spec(scope) is None:
            pytest.skip(f'{scope} is not installed')
        importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    init_default_scope(scope)
    return cfg, scope


def walk(node, fn):
    """Call ``fn`` on every dict in a nested config (depth first)."""
    if isinstance(node, dict):
        fn(node)
        for value in list(node.values()):
            walk(value, fn)
    elif isinstance(node, (list, tuple)):
        for value in node:
            walk(value, fn)


def model_cfg(cfg, scope):
    model = copy.deepcopy(cfg.model)  # a ConfigDict: mmdet reads train_cfg.rpn etc.
    if cfg.get('data_preprocessor') is not None and isinstance(model, dict):
        model.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    if scope == 'mmseg':
        model['pretrained'] = None

    def no_weights(node):
        if node.get('type') in DIFFUSION_BACKBONES:
            node['checkpoint'] = None
        if isinstance(node.get('init_cfg'), dict) and node['init_cfg'].get('type') == 'Pretrained':
            node['init_cfg'] = None
    walk(model, no_weights)
    return model


def shrink(model):
    """Shrink wide diffusion U-Nets in place; returns (channel factor, size factor, input)."""
    factors = []

    def small_arch(node):
        if node.get('type') not in DIFFUSION_BACKBONES:
            return
        arch = node.get('arch', 'adm-256-uncond')
        flags = adm_flags_from(arch)
        node['random_init'] = 'redraw'
        node['dtype'] = 'fp32'   # fp16/bf16 autocast is slow on CPU
        if flags['num_channels'] <= SMALL_CHANNELS:
            factors.append((1.0, 1.0, flags['image_size']))
            return
        small = dict(arch) if isinstance(arch, dict) else dict(preset=arch)
        small['num_channels'] = SMALL_CHANNELS
        if flags['num_head_channels'] > 0:
            small['num_head_channels'] = 16
        node['arch'] = small
        factors.append((SMALL_CHANNELS / flags['num_channels'],
                        SMALL_INPUT / flags['image_size'], SMALL_INPUT))
    walk(model, small_arch)
    if not factors:
        return 1.0, 1.0, 32
    assert len(set(factors)) == 1, f'several diffusion backbones with other sizes: {factors}'
    return factors[0]


def scale_head(head, backbone, size):
    """Scale a head config's feature sizes like the shrunk backbone's input.

    ``in_channels`` are derived from the shrunk backbone itself; ``in_sizes`` are derived at
    the arch's native resolution, which shrinking keeps, so they are given here, scaled.
    """
    if size == 1.0:
        return

    def scale(value, factor):
        if isinstance(value, (list, tuple)):
            return type(value)(scale(v, factor) for v in value)
        return max(1, int(round(value * factor)))
    shapes = backbone_shapes(backbone)
    if shapes is not None and head.get('in_sizes') is None:
        sizes = derive_cls_head(head, shapes).get('in_sizes')
        if sizes is not None:
            head['in_sizes'] = scale(sizes, size)
    if head.get('embed_dims', 0) > 64:
        head['embed_dims'] = 64


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.parametrize('path', CONFIGS, ids=config_id)
def test_config_builds_and_runs(path):
    cfg, scope = load(path)
    if any(f"'{name}'" in str(cfg.model) for name in WEIGHT_FOLDER_BACKBONES):
        pytest.skip('needs a local diffusers folder: see tests/test_configs/test_sd_configs.py')
    small = model_cfg(cfg, scope)
    channels, size, input_size = shrink(small)

    # 1. Wide U-Nets: the full-size model on the meta device (runs every constructor and the
    #    shape derivation at the real widths). Other models are built
    #    at full size on CPU in step 3.
    if channels != 1.0:
        full = model_cfg(cfg, scope)
        walk(full, lambda n: n.update(random_init='guided')
             if n.get('type') in DIFFUSION_BACKBONES else None)
        if full.get('type') == 'RepFusionDistiller':
            full = full['teacher']  # mmpretrain students do not build on meta (.item())
        with torch.device('meta'):
            MODELS.build(full)

    # 2. Datasets, transforms and metrics are registered in the config's scope.
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader) is None:
            continue
        dataset = cfg[loader].dataset
        with DATASETS.switch_scope_and_registry(scope) as registry:
            assert registry.get(dataset.type) is not None, f'{loader}: {dataset.type}'
        for transform in dataset.get('pipeline', []):
            with TRANSFORMS.switch_scope_and_registry(scope) as registry:
                assert registry.get(transform['type']) is not None, transform
    for evaluator in ('val_evaluator', 'test_evaluator'):
        metrics = cfg.get(evaluator)
        for metric in (metrics if isinstance(metrics, (list, tuple)) else [metrics]):
            if metric:
                with METRICS.switch_scope_and_registry(scope) as registry:
                    assert registry.get(metric['type']) is not None, metric

    # 3. Shrunk copy on CPU, one forward.
    torch.manual_seed(0)
    x = torch.rand(2, 3, input_size, input_size) * 2 - 1
    if scope == 'mmpretrain':
        if small.get('head') is not None:
            scale_head(small['head'], small['backbone'], size)
        model = MODELS.build(small).eval()
        with torch.no_grad():
            out = model(x, mode='tensor')
        if small.get('head') is not None:
            num_classes = small['head'].get('num_classes')
            assert out.shape == (2, num_classes)
            assert torch.isfinite(out).all()
    else:
        backbone = MODELS.build(small['backbone'])
        backbone.eval()  # mmpretrain's ResNet.train() returns None
        with torch.no_grad():
            out = backbone(x)
        assert all(torch.isfinite(o).all() for o in out)


def test_all_configs_are_collected():
    names = {config_id(p) for p in CONFIGS}
    assert 'diffssl/linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py' in names
    assert 'diffssl/difformer_adm-256-uncond_8xb16-28e_in1k.py' in names
    assert not any('_base_' in n for n in names)


def test_imagenet_subset_ann_file_and_paper_pipelines(tmp_path):
    """The 1% config reads a converted SimCLR list; the paper's train pipeline resizes the
    shorter side into [256, 320] and crops 256; the val pipeline centre-crops 256."""
    pytest.importorskip('mmpretrain')
    import numpy as np
    from PIL import Image
    from mmengine.dataset import Compose
    cfg, _ = load(osp.join(ROOT, 'configs/diffssl/attention_adm-256-uncond_8xb16-28e_in1k-1pct.py'))
    for wnid in ('n01440764', 'n01443537'):
        folder = tmp_path / 'train' / wnid
        folder.mkdir(parents=True)
        for i in range(2):
            Image.new('RGB', (400, 300), (i * 100, 50, 50)).save(folder / f'{wnid}_{i}.JPEG')
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'train_1percent.txt').write_text(
        'n01440764/n01440764_1.JPEG 0\nn01443537/n01443537_0.JPEG 1\n')
    dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    dataset_cfg.data_root = str(tmp_path)
    dataset = DATASETS.build(dataset_cfg)
    assert len(dataset) == 2 and [int(dataset.get_cat_ids(i)[0]) for i in range(2)] == [0, 1]
    sample = dataset[0]
    assert tuple(sample['inputs'].shape) == (3, 256, 256)
    image = str(tmp_path / 'train/n01440764/n01440764_0.JPEG')
    resize = Compose(cfg.train_pipeline[:2])
    for _ in range(5):
        short = min(resize(dict(img_path=image))['img'].shape[:2])
        assert 256 <= short <= 320
    val = Compose(cfg.test_pipeline)(dict(img_path=image))
    assert tuple(val['inputs'].shape) == (3, 256, 256)
    assert cfg.data_preprocessor.mean == [127.5] * 3 and cfg.data_preprocessor.to_rgb
