"""mmseg's own entry points on our UPerNet config: ``mmseg/.mim/tools/train.py`` and
``test.py`` (``--show-dir`` with only the test split on disk, also through our
``tools/test.py``), the release of ``tools/publish_model.py`` read by ``init_model`` /
``inference_model`` and ``MMSegInferencer`` (with and without a config), in fresh processes
run from another folder.

The tiny UPerNet config and 2-image ADE20K-layout set are tests/test_dense's: 2 training
iterations, so predictions are compared between the entry points, not scored.
"""
import json
import os.path as osp
import shutil

import pytest
import torch

from conftest import ROOT, run_tool
from stock_helpers import ENV, drawn_pngs, publish, run_python, stock_tool

pytest.importorskip('mmseg')

from dense_data import make_ade_shapes, tiny_upernet_cfg  # noqa: E402

ITERS = 2


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """(config, run checkpoint, release, test-split-only data root) of mmseg's train.py."""
    root = make_ade_shapes(str(tmp_path_factory.mktemp('ade')))
    config = tiny_upernet_cfg(root, ITERS)
    work = str(tmp_path_factory.mktemp('work'))
    run_tool([stock_tool('mmseg', 'train'), config, '--work-dir', work], env=ENV,
             fresh_process=True)
    checkpoint = osp.join(work, f'iter_{ITERS}.pth')
    release = publish(checkpoint, str(tmp_path_factory.mktemp('release') / 'upernet.pth'))
    test_only = str(tmp_path_factory.mktemp('test_split_only'))
    for kind in ('images', 'annotations'):
        shutil.copytree(osp.join(root, kind, 'validation'), osp.join(test_only, kind, 'validation'))
    return config, checkpoint, release, test_only


def data_root_options(root):
    return [f'{loader}.dataset.data_root={root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]


DRAWN = ['test_0.jpg_0.png', 'test_1.jpg_0.png']


def test_our_test_tool_draws_with_only_the_test_split(trained, tmp_path):
    """tools/test.py --show-dir draws every test image with no training split on disk
    (mmseg's own SegVisualizationHook would build the train dataloader and fail)."""
    config, _, release, test_only = trained
    log = run_tool(['tools/test.py', config, release, '--work-dir', str(tmp_path),
                    '--show-dir', str(tmp_path / 'vis'), '--cfg-options']
                   + data_root_options(test_only), env=ENV)
    assert 'metrics: ' in log and 'mIoU' in log.split('metrics: ')[-1]
    assert [osp.basename(p) for p in drawn_pngs(str(tmp_path / 'vis'))] == DRAWN


@pytest.mark.slow
def test_stock_test_tool_draws_with_only_the_test_split(trained, tmp_path):
    """mmseg's own test.py too (the config's StandaloneSegVisualizationHook), with the
    interval set to 1 (see the next test)."""
    config, _, release, test_only = trained
    log = run_tool([stock_tool('mmseg', 'test'), config, release, '--work-dir', str(tmp_path),
                    '--show-dir', str(tmp_path / 'vis'), '--cfg-options']
                   + data_root_options(test_only) + ['default_hooks.visualization.interval=1'],
                   env=ENV, fresh_process=True)
    assert 'mIoU' in log, log[-3000:]
    assert [osp.basename(p) for p in drawn_pngs(str(tmp_path / 'vis'))] == DRAWN


@pytest.mark.slow
def test_stock_show_dir_draws_every_50th_batch(trained, tmp_path):
    """mmseg 1.2.2's test.py --show-dir keeps the hook's interval of 50: it draws the 50th,
    100th, ... batch, so nothing of a 2-image test set (README)."""
    config, _, release, test_only = trained
    run_tool([stock_tool('mmseg', 'test'), config, release, '--work-dir', str(tmp_path),
              '--show-dir', str(tmp_path / 'vis'), '--cfg-options']
             + data_root_options(test_only), env=ENV)
    assert drawn_pngs(str(tmp_path / 'vis')) == []


SEG_APIS = """
import json, sys
import torch
release, run_ckpt, config, image = {args!r}
torch.load(release, weights_only=True)          # safe loading, nothing allow-listed
assert 'mmdiffssl' not in sys.modules
from mmseg.apis import MMSegInferencer, inference_model, init_model

def pred(sample):
    return dict(logits=sample.seg_logits.data.tolist(), labels=sample.pred_sem_seg.data.tolist())

out = {{}}
inferencer = MMSegInferencer(model=None, weights=release, device='cpu')   # meta['cfg']
out['loaded_by_meta_cfg'] = 'mmdiffssl' in sys.modules
out['inferencer_no_config'] = pred(inferencer(image, return_datasamples=True))
inferencer = MMSegInferencer(model=config, weights=release, device='cpu')
out['inferencer'] = pred(inferencer(image, return_datasamples=True))
out['init_model_release'] = pred(inference_model(init_model(config, release, 'cpu'), image))
out['init_model_run'] = pred(inference_model(init_model(config, run_ckpt, 'cpu'), image))
print('RESULT ' + json.dumps(out))
"""


def test_seg_apis_accept_the_release(trained, tmp_path):
    config, checkpoint, release, test_only = trained
    image = osp.join(test_only, 'images', 'validation', '0.jpg')
    log = run_python(SEG_APIS.format(args=(release, checkpoint, config, image)), tmp_path)
    out = json.loads(log.split('RESULT ')[-1])
    assert out['loaded_by_meta_cfg']
    reference = out['init_model_run']
    assert torch.tensor(reference['logits']).shape[-2:] == (64, 64)
    for name in ('inferencer_no_config', 'inferencer', 'init_model_release'):
        assert torch.allclose(torch.tensor(out[name]['logits']),
                              torch.tensor(reference['logits']), atol=1e-5), name
        assert out[name]['labels'] == reference['labels'], name


def test_ddpm_canvas_configs_find_the_unet_from_any_folder(tmp_path, monkeypatch):
    """The -ddpm- canvas configs read the pretraining run under the repo's work_dirs/,
    wherever the process runs."""
    from mmengine.config import Config
    monkeypatch.chdir(tmp_path)
    expected = osp.join(ROOT, 'work_dirs', 'ddpm_adm-tiny_1xb64-5e_fashion-mnist-32px',
                        'epoch_5.pth')
    for path in ('mask_rcnn/fashion_mnist_canvas/'
                 'mask-rcnn_adm-tiny-ddpm-frozen_fpn_1xb16-1x_fashion-mnist-canvas.py',
                 'upernet/fashion_mnist_canvas/'
                 'upernet_adm-tiny-ddpm-frozen_1xb16-8k_fashion-mnist-canvas.py'):
        checkpoint = Config.fromfile(osp.join(ROOT, 'configs', path)).model.backbone.checkpoint
        assert osp.isabs(checkpoint) and osp.normpath(checkpoint) == expected, path
