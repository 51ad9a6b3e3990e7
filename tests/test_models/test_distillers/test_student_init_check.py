"""Stage two of RepFusion: a student that does not fit the stage-one checkpoint (another
stem) stops before training, naming the tensors that did not come from the file; one that
fits trains."""
import os.path as osp

import pytest
import torch

pytest.importorskip('mmpretrain')

from conftest import ROOT  # noqa: E402
from test_configs.folder_run import make_image_folder  # noqa: E402

STAGE_ONE = osp.join(ROOT, 'configs', 'repfusion',
                     'repfusion-fixed-t_adm-tiny_resnet18-cifar_1xb16-4e_folder-32px.py')
STAGE_TWO = osp.join(ROOT, 'configs', 'repfusion',
                     'resnet18-cifar_repfusion-init_1xb16-4e_folder-32px.py')

pytestmark = pytest.mark.usefixtures('one_thread')


def one_epoch(cfg, root, work_dir):
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader):
            cfg[loader].dataset.data_root = root
            cfg[loader].num_workers = 0
            cfg[loader].pop('persistent_workers', None)
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 100
    cfg.default_hooks.checkpoint.interval = 1
    cfg.work_dir = work_dir
    cfg.log_level = 'WARNING'
    return cfg


@pytest.fixture(scope='module')
def stage_one(tmp_path_factory):
    """A real stage-one checkpoint: one epoch of the fixed-t RepFusion config (Runner)."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    root = make_image_folder(str(tmp_path_factory.mktemp('folder')), train_per_class=4,
                             val_per_class=2)
    work_dir = str(tmp_path_factory.mktemp('stage_one'))
    Runner.from_cfg(one_epoch(Config.fromfile(STAGE_ONE), root, work_dir)).train()
    checkpoint = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(checkpoint)
    return root, checkpoint


def stage_two(root, checkpoint, work_dir, **backbone):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = one_epoch(Config.fromfile(STAGE_TWO), root, work_dir)
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    cfg.model.backbone.update(backbone)
    return Runner.from_cfg(cfg)


def test_student_of_another_stem_stops_before_training(stage_one, tmp_path):
    root, checkpoint = stage_one
    runner = stage_two(root, checkpoint, str(tmp_path / 'imagenet_stem'), type='ResNet')
    with pytest.raises(ValueError) as excinfo:
        runner.train()
    message = str(excinfo.value)
    assert f"initialised from '{checkpoint}', prefix 'student.'" in message, message
    assert 'another shape (1): conv1.weight (model (64, 3, 7, 7), file (64, 3, 3, 3))' in message
    assert runner.iter == 0   # not one training step
    assert not osp.exists(osp.join(str(tmp_path / 'imagenet_stem'), 'epoch_1.pth'))


def test_deep_stem_student_names_missing_and_unused_keys(stage_one, tmp_path):
    root, checkpoint = stage_one
    runner = stage_two(root, checkpoint, str(tmp_path / 'deep_stem'), type='ResNetV1c')
    with pytest.raises(ValueError) as excinfo:
        runner.train()
    message = str(excinfo.value)
    assert 'not in the file' in message and 'stem.0.conv.weight' in message, message
    assert 'file keys no tensor took (6): bn1.bias, bn1.num_batches_tracked' in message


def test_matching_student_passes_and_trains(stage_one, tmp_path):
    root, checkpoint = stage_one
    runner = stage_two(root, checkpoint, str(tmp_path / 'match'))
    runner.train()
    assert runner.iter >= 1


def test_check_catches_weights_changed_after_loading(stage_one):
    """An init that re-initialises loaded tensors (mmpretrain's zero_init_residual does for
    any init type but 'Pretrained') is caught as 'other values'."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from mmdiffssl.engine import check_pretrained_init
    from mmdiffssl.utils.compat import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()   # a stock ResNet loads a run checkpoint: no build of ours did
    _, checkpoint = stage_one
    cfg = Config.fromfile(STAGE_TWO)
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert check_pretrained_init(model) == 1
    torch.nn.init.zeros_(model.backbone.layer2[0].bn2.weight)
    with pytest.raises(ValueError, match=r'other values after init \(1\): layer2.0.bn2.weight'):
        check_pretrained_init(model)
