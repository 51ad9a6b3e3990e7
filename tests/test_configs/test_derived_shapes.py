"""Configs leave the backbone's numbers to the backbone, and their models are today's.

- Every config's model, built at full size on the meta device, has exactly the input shapes
  recorded in ``resolved_shapes.json`` when the configs still copied them by hand (commit
  7372383, ``record_resolved_shapes.py``): head ``in_channels``, ``in_sizes``,
  ``num_timesteps``, ``blocks``, ``timesteps``; neck and decode/auxiliary head
  ``in_channels``; ``pad_size_divisor`` and mmseg's padding.
- No config on a diffusion backbone gives those numbers any more, and such configs use the
  deriving model classes.
- The stock way of building works: ``Runner.from_cfg`` on unmodified configs (no tool
  rewrites them) for each codebase.
"""
import importlib.util
import json
import os.path as osp

import pytest
from mmengine.config import Config

from conftest import ROOT
from record_resolved_shapes import OUT, SKIPPED_MODELS, configs, record

import mmdiffssl  # noqa: F401
import mmdiffssl.models.detectors  # noqa: F401  (until mmdiffssl.models imports them)
import mmdiffssl.models.segmentors  # noqa: F401

with open(OUT) as f:
    RECORDED = json.load(f)
OURS = {'ImageClassifier': 'DiffSSLClassifier', 'MaskRCNN': 'DiffMaskRCNN',
        'EncoderDecoder': 'DiffEncoderDecoder'}
#: backbones that report their shapes (the others keep stock model classes and numbers)
SHAPED = ('ADMBackbone', 'SDBackbone', 'DifFeedBackbone', 'PixelBackbone')

pytestmark = pytest.mark.usefixtures('one_thread')


def name_of(path):
    return osp.relpath(path, osp.join(ROOT, 'configs'))


def needs(cfg):
    scope = cfg.get('default_scope') or 'mmengine'
    if scope != 'mmengine' and importlib.util.find_spec(scope) is None:
        pytest.skip(f'{scope} is not installed')
    if "'SDBackbone'" in str(cfg.model):
        pytest.importorskip('diffusers')


def test_recorded_configs_exist():
    names = {name_of(p) for p in configs()}
    assert set(RECORDED) <= names
    assert len(RECORDED) >= 50


@pytest.mark.parametrize('name', sorted(RECORDED))
def test_built_model_has_the_recorded_shapes(name):
    path = osp.join(ROOT, 'configs', name)
    needs(Config.fromfile(path))
    got, expected = record(path), dict(RECORDED[name])
    ours = got['type'] in OURS.values()
    assert got.pop('type') == (OURS.get(expected['type'], expected['type']) if ours
                               else expected['type'])
    expected.pop('type')
    assert got == expected


def given(part, key):
    return None if part is None else part.get(key)


@pytest.mark.parametrize('path', configs(), ids=name_of)
def test_configs_on_diffusion_backbones_leave_the_numbers_out(path):
    cfg = Config.fromfile(path)
    model = cfg.model
    if model.get('type') in SKIPPED_MODELS or model.backbone.type not in SHAPED:
        pytest.skip('no backbone shapes to derive')
    assert model.type in OURS.values(), model.type
    head = model.get('head')
    for key in ('in_channels', 'in_sizes', 'num_timesteps', 'blocks', 'timesteps'):
        assert given(head, key) is None, (key, head[key])
    for part in ('neck', 'decode_head', 'auxiliary_head'):
        assert given(model.get(part), 'in_channels') is None, part
    for pre in (model.get('data_preprocessor'), cfg.get('data_preprocessor')):
        for key in ('pad_size_divisor', 'size_divisor'):
            assert given(pre, key) is None, key
        assert given(given(pre, 'test_cfg'), 'size_divisor') is None


@pytest.mark.parametrize('name, check', [
    ('diffssl/linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py',
     lambda m: m.head.in_channels == (64, )),
    ('diffssl/difformer_adm-tiny_1xb16-4e_folder-32px.py',
     lambda m: (m.head.in_channels, m.head.in_sizes, m.head.blocks, m.head.num_timesteps)
     == ((128, 128, 128), (8, 8, 16), (6, 8, 10), 2)),
    ('mask_rcnn/fashion_mnist_canvas/'
     'mask-rcnn_adm-tiny-random-frozen_fpn_1xb16-1x_fashion-mnist-canvas.py',
     lambda m: m.neck.in_channels == [64, 64] and m.data_preprocessor.pad_size_divisor == 4),
    ('upernet/fashion_mnist_canvas/'
     'upernet_adm-tiny-random-frozen_1xb16-8k_fashion-mnist-canvas.py',
     lambda m: m.decode_head.in_channels == [64, 64] and m.auxiliary_head.in_channels == 64
     and m.data_preprocessor.test_cfg == dict(size_divisor=4)),
], ids=lambda v: v if isinstance(v, str) else '')
def test_stock_runner_builds_the_unmodified_config(name, check, tmp_path):
    """What tools/train.py and mmengine's own tools do: Config.fromfile (custom_imports),
    Runner.from_cfg; the model classes derive the numbers themselves."""
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
    needs(cfg)
    cfg.work_dir = str(tmp_path)
    cfg.launcher = 'none'
    runner = Runner.from_cfg(cfg)
    assert type(runner.model).__name__ in OURS.values()
    assert check(runner.model)
