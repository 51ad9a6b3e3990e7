"""mmdiffssl.apis.register_models(): every classification config (and nothing else) is in
the model index by its file name, the index ships in built packages with the configs it
points at, and mmpretrain is imported only when it is called."""
import glob
import os
import os.path as osp
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT
from stock_helpers import run_python

pytest.importorskip('mmpretrain')

CLASSIFIERS = ('DiffSSLClassifier', 'ImageClassifier')


def classification_configs():
    """{stem: path} of the configs mmpretrain builds as classifiers."""
    from mmengine.config import Config
    found = {}
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', '*', '*.py'))):
        cfg = Config.fromfile(path)
        if cfg.get('default_scope') == 'mmpretrain' and \
                cfg.get('model', {}).get('type') in CLASSIFIERS:
            found[osp.splitext(osp.basename(path))[0]] = path
    return found


def index_models():
    from modelindex.load_model_index import load

    from mmdiffssl.apis.model_index import model_index_root
    index = load(osp.join(model_index_root(), 'model-index.yml'))
    index.build_models_with_collections()
    return index.models


def test_registered_models_are_listed_by_config_name():
    from mmdiffssl.apis import register_models
    from mmpretrain import list_models
    names = register_models()
    assert register_models() == names            # idempotent
    assert len(names) >= 20 and set(names) <= set(list_models())
    assert 'linear_adm-tiny_1xb64-2e_fashion-mnist-32px' in list_models('linear_adm-tiny*')
    models = index_models()
    assert sorted(m.name for m in models) == sorted(names)
    for model in models:
        assert osp.isfile(osp.join(ROOT, model.config)), model.config
        assert osp.basename(model.config) == f'{model.name}.py'
        assert [r.task for r in model.results] == ['Image Classification'], model.name


@pytest.mark.slow
def test_index_names_every_classification_config():
    """Every config mmpretrain builds as a classifier, and no other (reads every config)."""
    expected = classification_configs()
    assert {m.name: osp.join(ROOT, m.config) for m in index_models()} == expected


def test_register_models_imports_mmpretrain_only_when_called(tmp_path):
    out = run_python("""
import sys
import mmdiffssl
eager = 'mmpretrain' in sys.modules
from mmdiffssl.apis import register_models
before = 'mmpretrain' in sys.modules
register_models()
print('RESULT', eager, before, 'mmpretrain' in sys.modules)
""", tmp_path).split('RESULT ')[-1].split()
    assert out == ['False', 'False', 'True']   # import mmdiffssl, apis: no mmpretrain


@pytest.mark.slow
def test_built_wheel_ships_the_index_and_its_configs(tmp_path):
    """A wheel holds mmdiffssl/.mim/{model-index.yml, configs/}; unpacked alone (no source
    checkout on the path) it registers the models and builds one by name."""
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '-q', '-w', str(tmp_path), ROOT], check=True, cwd=str(tmp_path))
    wheel, = glob.glob(str(tmp_path / 'mmdiffssl-*.whl'))
    site = tmp_path / 'site'
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    assert 'mmdiffssl/.mim/model-index.yml' in names
    assert 'mmdiffssl/.mim/configs/diffssl/metafile.yml' in names
    code = """
import mmdiffssl
from mmdiffssl.apis import register_models
from mmdiffssl.apis.model_index import model_index_root
from mmpretrain import get_model
register_models()
model = get_model('linear_adm-tiny_1xb16-4e_folder-32px')
print('RESULT', mmdiffssl.__file__, model_index_root(), type(model).__name__)
"""
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path), env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    package, root, model = proc.stdout.split('RESULT ')[-1].split()
    assert package == str(site / 'mmdiffssl' / '__init__.py')
    assert root == str(site / 'mmdiffssl' / '.mim') and model == 'DiffSSLClassifier'
