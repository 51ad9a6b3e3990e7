"""``import mmdiffssl`` registers every name lazily and imports no optional package."""
import importlib
import json

import pytest
from mmengine.registry import MODELS

from conftest import run_tool
from mmdiffssl.registry import LAZY_REGISTRATIONS, lazy_builder, registered_class

#: what ``import mmdiffssl`` must not import (mmengine.model alone imports transformers)
OPTIONAL = ('mmpretrain', 'mmdet', 'mmseg', 'mmcv', 'mmcv.ops', 'diffusers', 'transformers',
            'mmengine.model', 'mmengine.runner')


def test_import_pulls_in_no_optional_package_and_changes_no_torch_setting():
    code = '\n'.join([
        'import json, sys, torch',
        'safe = {repr(g) for g in torch.serialization.get_safe_globals()}',
        'import mmdiffssl',
        'from mmengine.registry import MODELS',
        'after = {repr(g) for g in torch.serialization.get_safe_globals()}',
        f'print(json.dumps(dict(imported=[m for m in {OPTIONAL!r} if m in sys.modules], '
        'safe_globals_changed=sorted(after ^ safe), '
        'backbone="ADMBackbone" in MODELS.module_dict)))'])
    report = json.loads(run_tool(['-c', code]).strip().splitlines()[-1])
    assert report == dict(imported=[], safe_globals_changed=[], backbone=True)


def test_the_first_build_allow_lists_mmengine_checkpoints():
    code = '\n'.join([
        'import torch, mmdiffssl',
        'from mmengine.registry import MODELS',
        'names = lambda: {getattr(g, "__name__", repr(g)) '
        'for g in torch.serialization.get_safe_globals()}',
        'assert "HistoryBuffer" not in names()',
        'MODELS.build(dict(type="PixelBackbone"))',
        'assert "HistoryBuffer" in names(), names()',
        'print("allow-listed on build")'])
    assert 'allow-listed on build' in run_tool(['-c', code])


def _child(scope, root):
    """The registry of ``scope`` whose parent is the root registry ``root``."""
    module = importlib.import_module(f'{scope}.registry')
    children = [r for r in vars(module).values() if getattr(r, 'parent', None) is root]
    assert children, f'{scope}.registry has no child of {root.name}'
    return children[0]


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_every_name_is_found_from_every_scope(scope):
    pytest.importorskip(scope)
    for root, names in LAZY_REGISTRATIONS.items():
        child = _child(scope, root)
        for name, module in names.items():
            assert name not in child.module_dict, f'{scope} shadows {name}'
            cls = registered_class(child, name)
            assert (cls.__name__, cls.__module__) == (name, module)


def test_builders_build_the_class_and_explain_a_missing_package():
    layer = MODELS.build(dict(type='PixelBackbone'))
    assert type(layer) is registered_class(MODELS, 'PixelBackbone')
    with pytest.raises(ModuleNotFoundError, match=r"FooHead needs 'mmfoo', which is not "
                       r'installed \(mmfoo.heads imports it\)'):
        lazy_builder('mmfoo.heads', 'FooHead')(num_classes=2)


def test_ln2d_is_a_class_for_mmcv_norm_layers():
    mmcv_cnn = pytest.importorskip('mmcv.cnn')
    from mmengine.registry import DefaultScope
    for scope in ('mmdet', 'mmseg'):
        pytest.importorskip(scope)
        with DefaultScope.overwrite_default_scope(scope):
            name, layer = mmcv_cnn.build_norm_layer(dict(type='DiffLN2d'), 8)
        assert name == 'ln' and type(layer).__name__ == 'DiffLN2d'
