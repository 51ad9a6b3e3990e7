"""tools/publish_model.py: a release holds state_dict + plain meta, loads with
``torch.load(weights_only=True)`` in a process that never imports mmdiffssl, records the
diffusion backbones' weights fingerprint and source, and is named by its sha256."""
import hashlib
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from conftest import ROOT
from stock_helpers import publish, run_python

from mmdiffssl.models.backbones.base import encode_fingerprint

FINGERPRINT = 'file:0123abcd:prefix=unet.:key=None'
CFG = ("model = dict(type='DiffSSLClassifier', backbone=dict(type='ADMBackbone', "
       "checkpoint='/weights/unet.pt', checkpoint_prefix='unet.', frozen=True), "
       "head=dict(type='PooledLinearHead'))\n")


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'publish_model', osp.join(ROOT, 'tools', 'publish_model.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_checkpoint(tmp_path):
    """A run checkpoint as mmengine writes it: numpy in meta, a HistoryBuffer, an optimizer."""
    state_dict = {'backbone._extra_state': encode_fingerprint(FINGERPRINT),
                  'backbone.noise._extra_state': torch.Generator().manual_seed(0).get_state(),
                  'head.fc.weight': torch.randn(4, 8), 'head.fc.bias': torch.randn(4)}
    buffer = HistoryBuffer()
    buffer.update(1.5)
    checkpoint = dict(
        meta=dict(cfg=CFG, seed=np.int64(3), epoch=4, time='20261201',
                  dataset_meta=dict(classes=('a', 'b'), palette=np.array([[1, 2, 3]]))),
        state_dict=state_dict, message_hub=dict(log_scalars={'loss': buffer}),
        optimizer=dict(state={}, param_groups=[dict(lr=np.float64(0.1))]))
    path = str(tmp_path / 'epoch_4.pth')
    torch.save(checkpoint, path)
    return path, state_dict


FRESH = """
import json, pickle, sys, torch
run, release = {args!r}
try:
    torch.load(run, weights_only=True)
    run_loads = True
except pickle.UnpicklingError:
    run_loads = False
obj = torch.load(release, weights_only=True)

def types(v):
    if isinstance(v, dict):
        return set().union(*(types(x) for x in v.values())) if v else set()
    if isinstance(v, (list, tuple)):
        return {{type(v).__name__}}.union(*(types(x) for x in v))
    return {{type(v).__name__}}

print('RESULT ' + json.dumps(dict(
    run_loads=run_loads, keys=sorted(obj), meta_types=sorted(types(obj['meta'])),
    meta={{k: v for k, v in obj['meta'].items() if k != 'dataset_meta'}},
    palette=obj['meta']['dataset_meta']['palette'], mmdiffssl='mmdiffssl' in sys.modules)))
"""


def test_release_loads_safely_without_mmdiffssl(run_checkpoint, tmp_path):
    path, state_dict = run_checkpoint
    release = publish(path, str(tmp_path / 'release' / 'linear.pth'))
    with open(release, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert osp.basename(release) == f'linear-{digest[:8]}.pth'

    out = json.loads(run_python(FRESH.format(args=(path, release)), tmp_path)
                     .split('RESULT ')[-1])
    assert not out['run_loads']          # the run checkpoint needs mmdiffssl's allow-list
    assert out['keys'] == ['meta', 'state_dict'] and not out['mmdiffssl']
    assert set(out['meta_types']) <= {'dict', 'list', 'tuple', 'str', 'int', 'float', 'bool',
                                      'NoneType'}, out['meta_types']
    meta = out['meta']
    assert meta['seed'] == 3 and meta['cfg'] == CFG and out['palette'] == [[1, 2, 3]]
    # the noise generator's extra state is not a backbone fingerprint
    assert meta['diffusion_backbones'] == {'backbone': dict(
        fingerprint=FINGERPRINT,
        source=dict(checkpoint='/weights/unet.pt', checkpoint_prefix='unet.'))}

    saved = torch.load(release, weights_only=True)['state_dict']
    assert saved.keys() == state_dict.keys()
    assert all(torch.equal(saved[k], v) for k, v in state_dict.items())
    with open(path, 'rb') as f:      # the run checkpoint is left as it was (still resumes)
        assert 'message_hub' in torch.load(f, weights_only=False)


class Foreign:
    pass


def test_foreign_objects_in_meta_are_named():
    tool = load_tool()
    with pytest.raises(TypeError, match=r"meta\['hooks'\]\[0\] is a [\w.]*Foreign, which "):
        tool.plain(dict(hooks=[Foreign()]))
    with pytest.raises(ValueError, match='no state_dict'):
        tool.release_checkpoint(dict(model={}))
