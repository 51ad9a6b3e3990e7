"""ADMBackbone inside a real mmengine Runner: frozen semantics, small checkpoints, resume."""
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import ROOT
from mmdiffssl.models.backbones import ADMBackbone

DEMO_CFG = osp.join(ROOT, 'configs/diffssl/linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py')


def assert_states_equal(actual, expected):
    """Every entry equal, tensors bit for bit (``_extra_state`` entries are dicts)."""
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_states_equal(actual[key], value)
        else:
            assert torch.equal(actual[key], value), key


def make_cfg(work_dir, data_root, unet_ckpt, epochs, noise='fixed'):
    cfg = Config.fromfile(DEMO_CFG)
    cfg.work_dir = str(work_dir)
    cfg.model.backbone.update(checkpoint=unet_ckpt, noise=noise)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
        cfg[loader].dataset.indices = 64
        cfg[loader].num_workers = 0
        cfg[loader].batch_size = 16
    cfg.train_cfg.max_epochs = epochs
    cfg.default_hooks.logger.interval = 1
    cfg.log_level = 'WARNING'
    return cfg


def save_unet(tmp_path):
    unet = ADMBackbone(arch=Config.fromfile(DEMO_CFG).model.backbone.arch, blocks=(8, ),
                       random_init='redraw', prune=False).unet
    path = str(tmp_path / 'unet.pt')
    torch.save(unet.state_dict(), path)
    return path, {k: v.clone() for k, v in unet.state_dict().items()}


def test_frozen_unet_unchanged_and_left_out_of_checkpoints(tmp_path, fashion_mnist_root):
    ckpt, before = save_unet(tmp_path)
    runner = Runner.from_cfg(make_cfg(tmp_path / 'work', fashion_mnist_root, ckpt, 2))
    head_before = {k: v.clone() for k, v in runner.model.head.state_dict().items()}
    modes = []  # (classifier in train mode, any U-Net module in train mode) per U-Net call
    unet = runner.model.backbone.unet
    unet.input_blocks[0].register_forward_pre_hook(
        lambda module, args: modes.append(
            (runner.model.training, any(m.training for m in unet.modules()))))
    runner.train()
    model = runner.model
    assert any(train for train, _ in modes), 'no U-Net call during training steps'
    assert not any(unet_train for _, unet_train in modes)
    for key, value in model.backbone.unet.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert any(not torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())

    saved = torch.load(osp.join(runner.work_dir, 'epoch_2.pth'))['state_dict']
    assert not any(k.startswith('backbone.unet.') for k in saved)
    assert 'head.fc.weight' in saved
    # The small checkpoint loads back exactly (the U-Net comes from `checkpoint=`).
    fresh = Runner.from_cfg(make_cfg(tmp_path / 'work2', fashion_mnist_root, ckpt, 2))
    fresh.load_checkpoint(osp.join(runner.work_dir, 'epoch_2.pth'))
    assert_states_equal(fresh.model.state_dict(), model.state_dict())


def test_resume_repeats_straight_run_with_fresh_noise(tmp_path, fashion_mnist_root):
    ckpt, _ = save_unet(tmp_path)
    straight = Runner.from_cfg(make_cfg(tmp_path / 'straight', fashion_mnist_root, ckpt, 2,
                                        noise='fresh'))
    straight.train()

    first = Runner.from_cfg(make_cfg(tmp_path / 'split', fashion_mnist_root, ckpt, 1,
                                     noise='fresh'))
    first.train()
    cfg = make_cfg(tmp_path / 'split', fashion_mnist_root, ckpt, 2, noise='fresh')
    cfg.resume = True
    cfg.load_from = osp.join(first.work_dir, 'epoch_1.pth')
    resumed = Runner.from_cfg(cfg)
    resumed.train()
    assert_states_equal(resumed.model.state_dict(), straight.model.state_dict())
