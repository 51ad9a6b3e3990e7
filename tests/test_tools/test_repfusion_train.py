"""RepFusion end to end: stage one through tools/train.py with a real (tiny, re-drawn)
ADMBackbone teacher and a learned timestep policy; stage two loads the distilled student into
downstream configs (tensors checked) and trains it.

Stage one: configs/repfusion/repfusion-learned-t_adm-tiny_resnet18-cifar_1xb16-4e_folder-32px.py
on a generated 4-class image folder (64 training images, 4 epochs of batch 16).
"""
import copy
import glob
import json
import os.path as osp

import pytest
import torch

pytest.importorskip('mmpretrain')

from mmdiffssl.utils.compat import allow_mmengine_checkpoints  # noqa: E402
from conftest import ROOT, run_tool  # noqa: E402
from test_configs.folder_run import ENV, make_image_folder  # noqa: E402

STAGE_ONE = osp.join(ROOT, 'configs', 'repfusion',
                     'repfusion-learned-t_adm-tiny_resnet18-cifar_1xb16-4e_folder-32px.py')
STAGE_TWO = osp.join(ROOT, 'configs', 'repfusion',
                     'resnet18-cifar_repfusion-init_1xb16-4e_folder-32px.py')
UPERNET = osp.join(ROOT, 'configs', 'repfusion',
                   'upernet_resnet18-repfusion-init_4xb4-80k_ade20k-512x512.py')


# the tests torch.load Runner checkpoints before building any mmdiffssl module (the first
# build is what allow-lists mmengine's checkpoint contents since registration became lazy)
allow_mmengine_checkpoints()


def data_options(root, loaders=('train_dataloader', )):
    return [f'{loader}.{key}' for loader in loaders
            for key in (f'dataset.data_root={root}', 'num_workers=0')]


def scalars(work_dir):
    """Per-iteration training records of mmengine's LocalVisBackend (scalars.json)."""
    path, = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def stage_one(tmp_path_factory):
    root = make_image_folder(str(tmp_path_factory.mktemp('image_folder')))
    work_dir = str(tmp_path_factory.mktemp('repfusion'))
    run_tool(['tools/train.py', STAGE_ONE, '--work-dir', work_dir, '--cfg-options']
             + data_options(root), env=ENV)
    return root, work_dir


def test_policy_trains_and_distillation_loss_falls(stage_one):
    _, work_dir = stage_one
    records = [r for r in scalars(work_dir) if 'loss_distill' in r]
    assert len(records) == 16
    distill = [r['loss_distill'] for r in records]
    assert sum(distill[-4:]) < 0.7 * sum(distill[:4]), distill
    assert all('loss_policy' in r and 'policy_mean_t' in r for r in records)
    coef = [r['entropy_coef'] for r in records]
    assert coef[0] == pytest.approx(0.1) and coef[-1] == pytest.approx(0.025), coef

    # the hook logged the policy's mean distribution once per epoch, and it left uniform
    with open(osp.join(work_dir, 'timestep_policy.jsonl')) as f:
        reports = [json.loads(line) for line in f]
    assert [r['epoch'] for r in reports] == [1, 2, 3, 4]
    assert reports[0]['timesteps'] == list(range(0, 1000, 50))
    probs = torch.tensor(reports[-1]['probs'])
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert (probs - 1 / 20).abs().max() > 1e-3, probs

    state = torch.load(osp.join(work_dir, 'epoch_4.pth'), map_location='cpu')['state_dict']
    assert state['timestep_policy.logits.weight'].abs().sum() > 0   # zero-initialised
    assert any(k.startswith('student.') for k in state)
    assert any(k.startswith('teacher.unet.') for k in state)  # random teacher: no file


def test_student_loads_into_stage_two_and_trains(stage_one, tmp_path):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    root, work_dir = stage_one
    checkpoint = osp.join(work_dir, 'epoch_4.pth')
    state = torch.load(checkpoint, map_location='cpu')['state_dict']
    student = {k[len('student.'):]: v for k, v in state.items() if k.startswith('student.')}

    cfg = Config.fromfile(STAGE_TWO)
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    model.init_weights()
    loaded = model.backbone.state_dict()
    assert set(loaded) == set(student)
    for key, value in student.items():
        assert torch.equal(loaded[key], value), key

    out_dir = str(tmp_path / 'stage_two')
    options = (['--cfg-options', f'model.backbone.init_cfg.checkpoint={checkpoint}']
               + data_options(root, ('train_dataloader', 'val_dataloader', 'test_dataloader')))
    run_tool(['tools/train.py', STAGE_TWO, '--work-dir', out_dir] + options, env=ENV)
    log_file, = glob.glob(osp.join(out_dir, '*', '*.log'))
    with open(log_file) as f:
        assert f'PretrainedInit: load from {checkpoint}' in f.read()
    records = scalars(out_dir)
    losses = [r['loss'] for r in records if 'loss' in r]
    assert len(losses) >= 2 and losses[-1] < 0.5 * losses[0], losses
    accuracy = [r['accuracy/top1'] for r in records if 'accuracy/top1' in r]
    assert accuracy and accuracy[-1] >= 95.0, records[-1]


def test_imagenet_style_student_loads_into_upernet(tmp_path):
    """A distiller with mmpretrain's ResNet-18 student saved as a Runner checkpoint loads
    through the UPerNet config's init_cfg (prefix 'student.') tensor for tensor."""
    pytest.importorskip('mmseg')
    import mmseg.utils
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from test_models.test_distillers.test_repfusion import TEACHER
    init_default_scope('mmpretrain')
    distiller = MODELS.build(dict(
        type='RepFusionDistiller', teacher=TEACHER,
        student=dict(type='ResNet', depth=18, out_indices=(3, )),
        timestep_policy=dict(type='FixedTimestep', timestep=50)))
    for param in distiller.student.parameters():
        torch.nn.init.normal_(param)
    checkpoint = str(tmp_path / 'distilled.pth')
    torch.save(dict(state_dict=distiller.state_dict()), checkpoint)

    cfg = Config.fromfile(UPERNET)
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    mmseg.utils.register_all_modules(init_default_scope=False)
    init_default_scope('mmseg')
    segmentor = MODELS.build(cfg.model)
    segmentor.init_weights()
    loaded = segmentor.backbone.state_dict()
    student = distiller.student.state_dict()
    assert set(loaded) == set(student)
    for key, value in student.items():
        assert torch.equal(loaded[key], value), key


# slow: three RepFusion runs, ~32 s of CPU (make test keeps the feature cache's online parity)
@pytest.mark.slow
def test_teacher_cache_matches_online_distillation(tmp_path):
    """Fixed t, no augmentation: 16 steps with the teacher's features from the cache give the
    online run's distillation losses within 1e-3; the second run reuses the filled cache."""
    root = make_image_folder(str(tmp_path / 'image_folder'), train_per_class=8)
    online = osp.join(ROOT, 'configs', 'repfusion',
                      'repfusion-fixed-t_adm-tiny_resnet18-cifar_1xb16-4e_folder-32px.py')
    cached = online.replace('fixed-t_', 'fixed-t-cached_')
    cache_root = str(tmp_path / 'teacher_cache')
    losses = {}
    for name, config in (('online', online), ('cached', cached), ('again', cached)):
        work_dir = str(tmp_path / name)
        cache = [f'teacher_cache.root={cache_root}'] if name != 'online' else []
        run_tool(['tools/train.py', config, '--work-dir', work_dir, '--cfg-options']
                 + cache + data_options(root), env=ENV)
        losses[name] = [r['loss_distill'] for r in scalars(work_dir) if 'loss_distill' in r]
    assert len(losses['online']) == 8
    for name in ('cached', 'again'):
        assert losses[name] == pytest.approx(losses['online'], rel=1e-3, abs=1e-3), losses
    assert len(glob.glob(osp.join(cache_root, '*', 'features.npy'))) == 1


def test_stage_two_starts_from_the_stage_one_ema_weights(tmp_path):
    """A stage-one run with the reference recipe's EMAHook (momentum 0.001) saves the EMA
    student; the reference CIFAR-10 stage-two config loads exactly those tensors, not the
    raw weights: the EMA is recomputed here from the raw weights after every iteration
    (mmengine's convention: the first update copies, then e = (1 - m) e + m w)."""
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import Runner

    reference = Config.fromfile(osp.join(ROOT, 'configs', 'repfusion',
                                         'resnet18-cifar_repfusion-init_1xb64-200e_cifar10.py'))
    ema_hook, = [h for h in reference.custom_hooks if h['type'] == 'EMAHook']
    momentum = ema_hook['momentum']
    assert momentum == 0.001

    class RawStudent(Hook):
        def __init__(self):
            self.raw = []

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.raw.append({k: p.detach().clone()
                             for k, p in runner.model.student.named_parameters()})

    root = make_image_folder(str(tmp_path / 'image_folder'), train_per_class=8)
    cfg = Config.fromfile(STAGE_ONE)
    cfg.work_dir = str(tmp_path / 'stage_one')
    cfg.train_dataloader.dataset.data_root = root
    cfg.train_dataloader.num_workers = 0
    cfg.train_cfg.max_epochs = 1
    cfg.param_scheduler.T_max = 1
    cfg.custom_hooks = [dict(type='TimestepPolicyHook', decay_end=1), ema_hook]
    cfg.default_hooks.checkpoint.interval = 1
    runner = Runner.from_cfg(cfg)
    recorder = RawStudent()
    runner.register_hook(recorder, priority='LOWEST')
    runner.train()
    assert len(recorder.raw) == 2   # 32 images, batch 16

    ema = recorder.raw[0]
    for raw in recorder.raw[1:]:
        ema = {k: (1 - momentum) * e + momentum * raw[k] for k, e in ema.items()}

    stage_two = copy.deepcopy(reference)
    stage_two.model.backbone.init_cfg.checkpoint = osp.join(cfg.work_dir, 'epoch_1.pth')
    init_default_scope('mmpretrain')
    model = MODELS.build(stage_two.model)
    model.init_weights()
    loaded = dict(model.backbone.named_parameters())
    assert set(loaded) == set(ema)
    last = recorder.raw[-1]
    for key, value in ema.items():
        torch.testing.assert_close(loaded[key], value, rtol=1e-6, atol=1e-7, msg=key)
    # ... and the raw weights are not what was loaded
    assert max((last[k] - loaded[k]).abs().max() for k in ema) > 1e-3
