"""LayerDecayOptimWrapperConstructor: per-block lr scales on top of custom_keys."""
import pytest
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, DefaultScope

from dense_data import TINY_ARCH
from mmdiffssl.engine import LayerDecayOptimWrapperConstructor, block_layer_ids
from mmdiffssl.models import ADMBackbone
from mmdiffssl.registry import registered_class


class Detector(nn.Module):
    def __init__(self, **backbone):
        super().__init__()
        self.backbone = ADMBackbone(arch=TINY_ARCH, **backbone)
        self.neck = nn.Conv2d(64, 8, 1)


def optim_cfg(**paramwise):
    return dict(constructor='LayerDecayOptimWrapperConstructor',
                optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                paramwise_cfg=dict(paramwise))


def lrs(wrapper, model):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(g['params'][0])]: g['lr'] for g in wrapper.optimizer.param_groups}


def test_layer_ids_follow_block_numbers():
    model = Detector(blocks='pyramid', frozen=False)       # blocks 20, 18, 16, 14
    ids, num_layers = block_layer_ids(model.backbone)
    assert num_layers == 21
    assert ids['backbone.unet.time_embed.0.weight'] == 0
    assert ids['backbone.unet.input_blocks.0.0.weight'] == 1
    assert ids['backbone.unet.input_blocks.11.0.in_layers.2.weight'] == 12
    assert ids['backbone.unet.middle_block.0.in_layers.2.weight'] == 13
    assert ids['backbone.unet.output_blocks.0.0.in_layers.2.weight'] == 14
    assert ids['backbone.unet.output_blocks.6.0.in_layers.2.weight'] == 20
    # blocks after the deepest computed one and the output head are not built
    assert not any(n.startswith(('backbone.unet.output_blocks.7.', 'backbone.unet.out.'))
                   for n in ids)


def test_lr_scales_with_backbone_lr_mult_from_any_scope():
    model = Detector(blocks='pyramid', frozen=False)
    cfg = optim_cfg(layer_decay_rate=0.5, norm_decay_mult=0.0,
                    custom_keys={'backbone': dict(lr_mult=0.1)})
    with DefaultScope.overwrite_default_scope('mmdet'):
        pytest.importorskip('mmdet')
        wrapper = build_optim_wrapper(model, cfg)
    lr = lrs(wrapper, model)
    assert lr['neck.weight'] == pytest.approx(1e-3)
    assert lr['backbone.unet.output_blocks.6.0.in_layers.2.weight'] == pytest.approx(
        1e-4 * 0.5)                                              # block 20 (deepest)
    assert lr['backbone.unet.input_blocks.0.0.weight'] == pytest.approx(1e-4 * 0.5 ** 20)
    assert lr['backbone.unet.time_embed.0.weight'] == pytest.approx(1e-4 * 0.5 ** 21)
    groups = {id(g['params'][0]): g for g in wrapper.optimizer.param_groups}
    assert groups[id(model.backbone.unet.input_blocks[0][0].weight)]['layer_id'] == 1


def test_rate_one_is_the_default_constructor_and_errors():
    model = Detector(blocks=(16, ), frozen=False)
    lr = lrs(build_optim_wrapper(model, optim_cfg(layer_decay_rate=1.0)), model)
    assert set(lr.values()) == {1e-3}
    with pytest.raises(ValueError, match='layer_decay_rate'):
        cfg = optim_cfg()
        LayerDecayOptimWrapperConstructor(cfg, dict(layer_decay_rate=0.0))
    with pytest.raises(TypeError, match='layer decay needs a diffusion backbone'):
        build_optim_wrapper(nn.Linear(2, 2), optim_cfg(layer_decay_rate=0.9))


def test_decay_survives_the_lr_schedulers():
    from mmengine.optim import LinearLR
    model = Detector(blocks=(16, ), frozen=False)
    wrapper = build_optim_wrapper(model, optim_cfg(layer_decay_rate=0.5))
    before = [g['lr'] for g in wrapper.optimizer.param_groups]
    scheduler = LinearLR(wrapper, start_factor=0.1, end=10, by_epoch=False)
    for _ in range(10):
        scheduler.step()
    after = [g['lr'] for g in wrapper.optimizer.param_groups]
    assert after == pytest.approx(before)
    assert min(before) == pytest.approx(1e-3 * 0.5 ** 17)
    assert registered_class(OPTIM_WRAPPER_CONSTRUCTORS,
                            'LayerDecayOptimWrapperConstructor') is LayerDecayOptimWrapperConstructor


def test_frozen_blocks_keep_no_grad_and_train_step_runs():
    model = Detector(blocks=(16, ), frozen=False, trainable_from=10)
    wrapper = build_optim_wrapper(model, optim_cfg(layer_decay_rate=0.8))
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    loss = model.neck(model.backbone(x)[0]).square().mean()
    wrapper.update_params(loss)
    frozen = model.backbone.unet.input_blocks[0][0].weight
    assert not frozen.requires_grad and frozen.grad is None
