"""Record the input shapes every config's built model resolves to (run once, not a test).

For each config under ``configs/`` (classifiers, detectors, segmentors; distillers and
pretrainers have no head shapes), the full-size model is built on the meta device (no
weights) and the attributes that depend on the backbone are written to
``resolved_shapes.json`` next to this file: the head's ``in_channels``, ``in_sizes``,
``num_timesteps``, ``blocks``, ``timesteps``; the neck's ``in_channels``; the decode and
auxiliary heads' ``in_channels`` and ``in_index``; the data preprocessor's
``pad_size_divisor`` (mmdet) or ``size``, ``size_divisor`` and ``test_cfg`` (mmseg).

``resolved_shapes.json`` was written by this script at commit 7372383, when the configs still
copied these numbers by hand; ``test_derived_shapes.py`` checks that the models built from
today's configs (which leave them to the backbone) have exactly these values. Re-record
only when a config's layout changes on purpose::

    PYTHONPATH=<checkout> python tests/test_configs/record_resolved_shapes.py
"""
import copy
import glob
import importlib
import json
import os.path as osp
import sys

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
OUT = osp.join(HERE, 'resolved_shapes.json')
SKIPPED_MODELS = ('RepFusionDistiller', 'DDPMPretrainer')
DIFFUSION_BACKBONES = ('ADMBackbone', 'SDBackbone', 'DiffusersUNetBackbone')
HEAD_KEYS = ('in_channels', 'in_sizes', 'num_timesteps', 'blocks', 'timesteps', 'feat_index')


def configs():
    return sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                  if f'{osp.sep}_base_{osp.sep}' not in p)


def plain(value):
    """Attribute values as JSON data (tuples -> lists)."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def walk(node, fn):
    if isinstance(node, dict):
        fn(node)
        for value in list(node.values()):
            walk(value, fn)
    elif isinstance(node, (list, tuple)):
        for value in node:
            walk(value, fn)


def meta_model_cfg(cfg, scope):
    """The config's model, weights switched off so that it builds on the meta device."""
    model = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    if scope == 'mmseg':
        model['pretrained'] = None

    def no_weights(node):
        kind = node.get('type')
        if kind == 'ADMBackbone':
            node.update(checkpoint=None, random_init='guided')
        elif kind == 'SDBackbone':
            from mmdiffssl.models.unets.diffusers_blocks import SD_ARCHS
            node.update(pretrained=None, unet_config=SD_ARCHS['sd-1.x']['unet'],
                        vae_config=SD_ARCHS['sd-1.x']['vae'],
                        text=dict(type='learned', num_tokens=77))
        if isinstance(node.get('init_cfg'), dict) and node['init_cfg'].get('type') == 'Pretrained':
            node['init_cfg'] = None
    walk(model, no_weights)
    return model


def attrs(module, keys):
    return {k: plain(getattr(module, k)) for k in keys if hasattr(module, k)}


def resolved(model, scope):
    out = dict(type=type(model).__name__)
    pre = model.data_preprocessor
    if scope == 'mmdet':
        out['data_preprocessor'] = attrs(pre, ('pad_size_divisor', ))
    elif scope == 'mmseg':
        out['data_preprocessor'] = attrs(pre, ('size', 'size_divisor', 'test_cfg'))
    for name in ('head', 'neck', 'decode_head', 'auxiliary_head'):
        part = getattr(model, name, None)
        if part is None:
            continue
        found = attrs(part, HEAD_KEYS + ('in_index', ))
        if found:
            out[name] = dict(type=type(part).__name__, **found)
    return out


def record(path):
    cfg = Config.fromfile(path)
    scope = cfg.get('default_scope') or 'mmengine'
    if cfg.model.get('type') in SKIPPED_MODELS:
        return None
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    init_default_scope(scope)
    model_cfg = meta_model_cfg(cfg, scope)
    diffusion = any(f"'{name}'" in str(model_cfg) for name in DIFFUSION_BACKBONES)
    # mmpretrain's ResNets do not build on the meta device (.item()); they are small
    with torch.device('meta' if diffusion else 'cpu'):
        model = MODELS.build(model_cfg)
    return resolved(model, scope)


def main():
    import mmdiffssl  # noqa: F401
    result = {}
    for path in configs():
        name = osp.relpath(path, osp.join(ROOT, 'configs'))
        shapes = record(path)
        if shapes is not None:
            result[name] = shapes
            print(name, shapes, file=sys.stderr)
    lines = [f'{json.dumps(k)}: {json.dumps(v, sort_keys=True)}' for k, v in sorted(result.items())]
    with open(OUT, 'w') as f:
        f.write('{\n' + ',\n'.join(lines) + '\n}\n')


if __name__ == '__main__':
    main()
