"""mmpretrain's own entry points on our classification configs: ``mmpretrain/.mim/tools/
train.py`` and ``test.py``, and the release of ``tools/publish_model.py`` read by
``get_model`` (by config name after ``mmdiffssl.apis.register_models()``, and by path),
``inference_model`` and ``ImageClassificationInferencer``, in a fresh process run from
another folder.

The config is the linear probe on the random tiny ADM of tests/test_configs' image-folder
runs (4 classes), trained one epoch on a small generated folder: predictions are compared
between the entry points, not scored.
"""
import json
import os.path as osp

import pytest
import torch

from conftest import ROOT, run_tool
from stock_helpers import ENV, publish, run_python, stock_tool

pytest.importorskip('mmpretrain')

from folder_run import make_image_folder  # noqa: E402

NAME = 'linear_adm-tiny_1xb16-4e_folder-32px'
CONFIG = osp.join(ROOT, 'configs', 'diffssl', f'{NAME}.py')


def data_options(root):
    return ['--cfg-options'] + [f'{loader}.{key}' for loader in (
        'train_dataloader', 'val_dataloader', 'test_dataloader')
        for key in (f'dataset.data_root={root}', 'num_workers=0')]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """(run checkpoint, release, data root) of one epoch of mmpretrain's train.py."""
    root = make_image_folder(str(tmp_path_factory.mktemp('folder')), train_per_class=4,
                             val_per_class=2)
    work = str(tmp_path_factory.mktemp('work'))
    # mmpretrain's train.py sets persistent_workers=True on every loader unless told not to
    run_tool([stock_tool('mmpretrain', 'train'), CONFIG, '--work-dir', work,
              '--no-persistent-workers'] + data_options(root)
             + ['train_cfg.max_epochs=1', 'train_cfg.val_interval=100',
                'default_hooks.checkpoint.interval=1'], env=ENV, fresh_process=True)
    checkpoint = osp.join(work, 'epoch_1.pth')
    release = publish(checkpoint, str(tmp_path_factory.mktemp('release') / 'linear.pth'))
    return checkpoint, release, root


@pytest.mark.slow
def test_mmpretrain_test_tool_evaluates_the_release(trained, tmp_path):
    _, release, root = trained
    log = run_tool([stock_tool('mmpretrain', 'test'), CONFIG, release, '--work-dir',
                    str(tmp_path)] + data_options(root), env=ENV, fresh_process=True)
    assert 'accuracy/top1' in log, log[-3000:]


CLS_APIS = """
import json, sys
import torch
release, run_ckpt, config, name, image = {args!r}
torch.load(release, weights_only=True)          # safe loading, nothing allow-listed
assert 'mmdiffssl' not in sys.modules
from mmdiffssl.apis import register_models
from mmpretrain import ImageClassificationInferencer, get_model, inference_model, list_models
out = dict(registered=name in register_models(), listed=list_models('linear_adm-tiny_*'))
model = get_model(name, pretrained=release)     # by config name
out['get_model_by_name'] = inference_model(model, image)['pred_scores'].tolist()
out['inference_model_by_name'] = inference_model(name, image, pretrained=release)[
    'pred_scores'].tolist()
inferencer = ImageClassificationInferencer(config, pretrained=release)
out['inferencer'] = inferencer(image)[0]['pred_scores'].tolist()
out['get_model_run'] = inferencer.__class__(get_model(config, pretrained=run_ckpt))(image)[0][
    'pred_scores'].tolist()
try:                                             # mmpretrain 1.2.0 quirk (README)
    inference_model(get_model(config, pretrained=release), image)
    out['by_path'] = 'ok'
except NotImplementedError as err:
    out['by_path'] = f'NotImplementedError: {{err}}'
print('RESULT ' + json.dumps(out))
"""


def test_cls_apis_accept_the_release(trained, tmp_path):
    checkpoint, release, root = trained
    image = osp.join(root, 'val', 'class_0', '0.png')
    log = run_python(CLS_APIS.format(args=(release, checkpoint, CONFIG, NAME, image)), tmp_path)
    out = json.loads(log.split('RESULT ')[-1])
    assert out['registered'] and NAME in out['listed'], out['listed']
    reference = torch.tensor(out['get_model_run'])
    assert reference.shape == (4, ) and abs(float(reference.sum()) - 1) < 1e-5
    for key in ('get_model_by_name', 'inference_model_by_name', 'inferencer'):
        assert torch.allclose(torch.tensor(out[key]), reference, atol=1e-6), key
    assert out['by_path'] == 'NotImplementedError: No available inferencer for the model'
