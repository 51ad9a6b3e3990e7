"""mmdet's own entry points on our Mask R-CNN config: ``mmdet/.mim/tools/train.py`` and
``test.py``, ``tools/publish_model.py``'s release read by ``DetInferencer(weights=...)``
without a config, ``init_detector`` / ``inference_detector``, in fresh processes run from
another folder.

The tiny Mask R-CNN config and 2-image COCO set are tests/test_dense's (the real fine-tuning
config, shrunk): 2 training iterations, so the predictions are those of a barely trained
model, compared between the entry points, not scored.
"""
import json
import os.path as osp

import pytest
import torch

from conftest import run_tool
from stock_helpers import ENV, drawn_pngs, publish, run_python, stock_tool

pytest.importorskip('mmdet')
pytest.importorskip('mmcv.ops')

from dense_data import make_coco_shapes, tiny_mask_rcnn_cfg  # noqa: E402

ITERS = 2


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """(config, run checkpoint, release checkpoint, image) of a run of mmdet's train.py."""
    root = str(tmp_path_factory.mktemp('coco'))
    make_coco_shapes(root)
    config = tiny_mask_rcnn_cfg(root, ITERS)
    work = str(tmp_path_factory.mktemp('work'))
    run_tool([stock_tool('mmdet', 'train'), config, '--work-dir', work], env=ENV,
             fresh_process=True)
    checkpoint = osp.join(work, f'epoch_{ITERS}.pth')
    release = publish(checkpoint, str(tmp_path_factory.mktemp('release') / 'mask_rcnn.pth'))
    return config, checkpoint, release, osp.join(root, 'images', '0.png')


@pytest.mark.slow
def test_mmdet_test_tool_evaluates_and_draws_the_release(trained, tmp_path):
    config, _, release, _ = trained
    work = str(tmp_path / 'work')
    log = run_tool([stock_tool('mmdet', 'test'), config, release, '--work-dir', work,
                    '--show-dir', 'vis'], env=ENV, fresh_process=True)
    assert 'coco/bbox_mAP_50' in log and 'coco/segm_mAP_50' in log, log[-3000:]
    assert [osp.basename(p) for p in drawn_pngs(work)] == ['0.png', '1.png']


@pytest.mark.slow
def test_mmdet_train_tool_resumes_a_run_checkpoint(trained, tmp_path):
    """--resume with safe loading on: the model is built (allow-listing mmengine's
    checkpoint objects) before the run checkpoint is read."""
    config, checkpoint, _, _ = trained
    work = str(tmp_path / 'work')
    log = run_tool([stock_tool('mmdet', 'train'), config, '--work-dir', work, '--resume',
                    checkpoint, '--cfg-options', f'train_cfg.max_epochs={ITERS + 1}'], env=ENV)
    assert f'resumed epoch: {ITERS}' in log, log[-3000:]
    assert osp.isfile(osp.join(work, f'epoch_{ITERS + 1}.pth'))


DET_APIS = """
import json, sys
import numpy as np, torch
release, run_ckpt, config, image = {args!r}
torch.load(release, weights_only=True)          # safe loading, nothing allow-listed
assert 'mmdiffssl' not in sys.modules
from mmdet.apis import DetInferencer, inference_detector, init_detector

def pred(sample):
    p = sample.pred_instances
    return dict(bboxes=p.bboxes.tolist(), scores=p.scores.tolist(), labels=p.labels.tolist())

out = {{}}
inferencer = DetInferencer(weights=release, device='cpu')   # the config comes from meta['cfg']
out['loaded_by_meta_cfg'] = 'mmdiffssl' in sys.modules
out['inferencer'] = pred(inferencer(image, return_datasamples=True)['predictions'][0])
array = __import__('cv2').imread(image)          # BGR, as LoadImageFromFile reads it
out['inferencer_array'] = pred(inferencer(array, return_datasamples=True)['predictions'][0])
out['inferencer_after_array'] = pred(
    inferencer(image, return_datasamples=True)['predictions'][0])
out['init_detector_release'] = pred(inference_detector(init_detector(config, release, device='cpu'), image))
model = init_detector(config, run_ckpt, device='cpu')
out['init_detector_run'] = pred(inference_detector(model, image))
inference_detector(model, array)
try:                                             # mmdet 3.3.0 quirk (README)
    inference_detector(model, image)
    out['path_after_array'] = 'ok'
except KeyError as err:
    out['path_after_array'] = f'KeyError {{err}}'
print('RESULT ' + json.dumps(out))
"""


def test_det_apis_accept_the_release(trained, tmp_path):
    config, checkpoint, release, image = trained
    log = run_python(DET_APIS.format(args=(release, checkpoint, config, image)), tmp_path)
    out = json.loads(log.split('RESULT ')[-1])
    assert out['loaded_by_meta_cfg']          # meta['cfg'] custom_imports mmdiffssl
    reference = out['init_detector_run']
    assert len(reference['scores']) > 0
    for name in ('inferencer', 'inferencer_array', 'inferencer_after_array',
                 'init_detector_release'):
        for key, value in reference.items():
            assert torch.allclose(torch.tensor(out[name][key]), torch.tensor(value),
                                  atol=1e-4), (name, key)
    assert out['path_after_array'] == "KeyError 'img'", out['path_after_array']
