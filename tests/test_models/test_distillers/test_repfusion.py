"""RepFusionDistiller and its timestep policies: the learned policy finds the informative
timestep on a toy problem; losses, gradients, teacher targets and bad input on a real tiny
ADMBackbone teacher with an mmpretrain student."""
import copy

import pytest
import torch
from mmengine.registry import MODELS, init_default_scope

import mmdiffssl  # noqa: F401
from mmdiffssl.models.distillers import (DISTILL_LOSSES, LearnedTimestepPolicy,
                                         UniformTimestep)
from mmdiffssl.models.distillers.repfusion import policy_losses

pytest.importorskip('mmpretrain')

TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult='1,2,2',
            attention_resolutions='16,8', num_head_channels=16, learn_sigma=False)
TEACHER = dict(type='ADMBackbone', arch=TINY, blocks=(8, ), timesteps=(50, ), noise='none',
               frozen=True, random_init='redraw')
STUDENT = dict(type='mmpretrain.ResNet_CIFAR', depth=18, out_indices=(3, ))


pytestmark = pytest.mark.usefixtures('one_thread')


def distiller(**kwargs):
    init_default_scope('mmpretrain')
    cfg = dict(type='RepFusionDistiller', teacher=copy.deepcopy(TEACHER), student=STUDENT,
               timestep_policy=dict(type='FixedTimestep', timestep=50))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def samples(labels):
    from mmpretrain.structures import DataSample
    return [DataSample().set_gt_label(int(y)) for y in labels]


def images(batch=4, seed=0):
    return torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_learned_policy_moves_to_the_informative_timestep():
    """Toy problem: only at t=200 does the 'teacher feature' carry the label (a scaled
    one-hot plus noise); at 0, 100 and 300 it is noise. Starting uniform (0.25 each), the
    policy's mass on t=200 must grow past 0.6 through RepFusion's reward."""
    torch.manual_seed(0)
    candidates = (0, 100, 200, 300)
    num_classes, channels = 4, 8
    policy = LearnedTimestepPolicy(candidates=candidates, width=4, entropy_coef=0.01)
    aux_head = torch.nn.Linear(channels, num_classes)
    optimizer = torch.optim.Adam(list(policy.parameters()) + list(aux_head.parameters()),
                                 lr=0.05)
    policy.train()
    x = images(32)
    start = policy(x).probs.mean(0)
    torch.testing.assert_close(start, torch.full((4, ), 0.25))
    for _ in range(150):
        labels = torch.randint(0, num_classes, (32, ))
        out = policy(x)
        target = torch.randn(32, channels, 2, 2)
        informative = out.timesteps == 200
        target[informative, :num_classes] += 4 * torch.nn.functional.one_hot(
            labels[informative], num_classes).float()[:, :, None, None]
        losses = policy_losses(policy, aux_head, out, target, labels)
        optimizer.zero_grad()
        (losses['loss_aux_cls'] + losses['loss_policy']).backward()
        optimizer.step()
    probs = policy.eval()(x).probs.mean(0)
    assert probs[2] > 0.6, probs
    assert (policy.eval()(x).timesteps == 200).all()


def test_losses_gradients_and_teacher_target():
    model = distiller(
        timestep_policy=dict(type='LearnedTimestepPolicy', candidates=(10, 50, 400), width=4),
        num_classes=3).train()
    assert model.projector.in_channels == 512 and model.projector.out_channels == 64
    x, labels = images(4), torch.tensor([0, 1, 2, 0])
    losses = model(x, samples(labels), mode='loss')
    assert set(losses) == {'loss_distill', 'loss_aux_cls', 'loss_policy', 'reward',
                           'policy_entropy', 'policy_mean_t'}
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    for name, module in (('student', model.student), ('projector', model.projector),
                         ('aux_head', model.aux_head), ('policy', model.timestep_policy)):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), name
    assert all(p.grad is None for p in model.teacher.parameters())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    # the target of image i is the teacher's block-8 feature at the timestep drawn for it
    t = torch.tensor([10, 400, 50, 10])
    target = model.teacher_features(x, t)
    for i, step in enumerate(t.tolist()):
        ref = model.teacher.intermediates(x[i:i + 1], timesteps=(step, ))[8][0]
        torch.testing.assert_close(target[i:i + 1], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('loss', sorted(DISTILL_LOSSES))
def test_each_distill_loss_trains_the_student(loss):
    model = distiller(distill_loss=loss).train()
    assert (model.projector is None) == (loss == 'attention')
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.05)
    x = images(8)
    first = None
    for _ in range(8):
        value = model(x, samples([0] * 8), mode='loss')['loss_distill']
        first = value.item() if first is None else first
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    assert value.item() < first, (loss, first, value.item())


def test_fixed_and_uniform_policies():
    x = images(6)
    model = distiller()
    assert (model.timestep_policy(x).timesteps == 50).all()
    uniform = UniformTimestep(low=10, high=20, seed=3).train()
    drawn = uniform(x).timesteps
    assert ((drawn >= 10) & (drawn < 20)).all()
    state = copy.deepcopy(uniform.state_dict())
    after = uniform(x).timesteps
    resumed = UniformTimestep(low=10, high=20, seed=99)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.train()(x).timesteps, after)


def test_mode_tensor_returns_student_features_and_predict_is_refused():
    model = distiller().eval()
    out = model(images(2), mode='tensor')
    assert isinstance(out, tuple) and out[0].shape == (2, 512, 4, 4)
    with pytest.raises(ValueError, match='stage two'):
        model(images(2), mode='predict')


@pytest.mark.parametrize('kwargs, match', [
    (dict(teacher=dict(TEACHER, frozen=False)), 'frozen'),
    (dict(timestep_policy=dict(type='FixedTimestep', timestep=1000)), '1000'),
    (dict(timestep_policy=dict(type='LearnedTimestepPolicy', candidates=(10, 20))),
     'num_classes'),
    (dict(timestep_policy=dict(type='LearnedTimestepPolicy', candidates=(10, ))),
     'at least 2'),
    (dict(distill_loss='kl'), "'kl'"),
    (dict(teacher_block=40), '40'),
    (dict(student_index=3), 'student_index 3'),
    (dict(teacher_from_cache=True, num_classes=2,
          timestep_policy=dict(type='LearnedTimestepPolicy', candidates=(10, 20))), 'Fixed'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distiller(**kwargs)


def test_teacher_from_cache_reads_samples_and_refuses_missing_features():
    model = distiller(teacher_from_cache=True).train()
    x, data_samples = images(2), samples([0, 1])
    with pytest.raises(ValueError, match='teacher_cache'):
        model(x, data_samples, mode='loss')
    target = model.teacher_features(x, torch.tensor([50, 50]))
    for sample, feature in zip(data_samples, target):
        sample.set_field(feature.half(), 'teacher_feature')
    cached = model(x, data_samples, mode='loss')['loss_distill']
    model.teacher_from_cache = False
    online = model(x, data_samples, mode='loss')['loss_distill']
    torch.testing.assert_close(cached, online, rtol=1e-3, atol=1e-4)


def test_teacher_cache_switch_needs_a_fixed_policy():
    from mmengine.config import Config

    from mmdiffssl.engine.feature_cache_runner import with_teacher_cache
    cfg = Config(dict(model=dict(type='RepFusionDistiller', teacher=TEACHER,
                                 timestep_policy=dict(type='UniformTimestep')),
                      teacher_cache=dict(root='unused')))
    with pytest.raises(ValueError, match='FixedTimestep'):
        with_teacher_cache(cfg)


def test_default_student_is_resnet18():
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(type='RepFusionDistiller', teacher=copy.deepcopy(TEACHER)))
    assert type(model.student).__name__ == 'ResNet' and model.student.depth == 18
    assert model.projector.in_channels == 512
    assert model.timestep_policy.candidates() == (150, )


def test_diffusers_ddpm_teacher():
    """RepFusion's CIFAR-10 teacher is a diffusers DDPM: the same distiller runs on
    DiffusersUNetBackbone (a tiny random UNet2DModel) and its targets are that backbone's."""
    pytest.importorskip('diffusers')
    from helpers.sd_tiny import TINY_DDPM
    model = distiller(teacher=dict(type='DiffusersUNetBackbone', unet_config=TINY_DDPM,
                                   blocks=(6, ), noise='none', frozen=True)).train()
    assert model.projector.out_channels == model.teacher.block_shape(6).channels == 32
    x = images(2, seed=1)[:, :, :16, :16]
    losses = model(x, samples([0, 1]), mode='loss')
    losses['loss_distill'].backward()
    assert model.projector.weight.grad.abs().sum() > 0
    target = model.teacher_features(x, torch.tensor([50, 50]))
    torch.testing.assert_close(target, model.teacher.intermediates(x, timesteps=(50, ))[6][0])


def test_diffusers_ddpm_teacher_config_builds():
    """The CIFAR-10 config with RepFusion's diffusers DDPM teacher builds and takes a loss
    step once its weights folder is swapped for a tiny random UNet2DModel config."""
    pytest.importorskip('diffusers')
    from mmengine.config import Config

    from conftest import ROOT
    from helpers.sd_tiny import TINY_DDPM
    cfg = Config.fromfile(f'{ROOT}/configs/repfusion/'
                          'repfusion-learned-t_ddpm-cifar10_resnet18-cifar_1xb128-200e_cifar10.py')
    assert cfg.model.teacher.type == 'DiffusersUNetBackbone'
    assert cfg.model.teacher_tap == 'mid_block.resnets.1.conv2'   # the reference's tensor
    cfg.model.teacher.pretrained = None
    cfg.model.teacher.unet_config = TINY_DDPM
    cfg.model.data_preprocessor = cfg.data_preprocessor
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model).train()
    assert model.teacher.run_until == 4 and model.teacher.blocks == ()   # up to the mid block
    assert model.projector.out_channels == 32                         # TINY_DDPM's mid width
    # the reference's policy and classifier: softmax over all 1000 t, plain REINFORCE, MLP
    assert model.timestep_policy.candidates() == tuple(range(1000))
    assert model.timestep_policy.baseline_momentum is None
    assert [type(m).__name__ for m in model.aux_head] == ['Linear', 'ReLU'] * 2 + ['Linear']
    assert dict(type='EMAHook', momentum=0.001, update_buffers=False,
                priority='ABOVE_NORMAL') in cfg.custom_hooks
    losses = model(images(2)[:, :, :16, :16], samples([3, 7]), mode='loss')
    assert {'loss_distill', 'loss_policy', 'loss_aux_cls'} <= set(losses)
    # our options, a named config: 20 candidates and the moving-average baseline
    ours = Config.fromfile(f'{ROOT}/configs/repfusion/repfusion-learned-t-k20-baseline_'
                           'ddpm-cifar10_resnet18-cifar_1xb128-200e_cifar10.py')
    assert ours.model.timestep_policy.candidates == list(range(0, 1000, 50))
    assert ours.model.timestep_policy.baseline_momentum == 0.9


def test_teacher_tap_equals_a_hook_on_the_named_module():
    """teacher_tap distils a tensor inside a block: the target is what a forward hook on
    that module of the teacher's U-Net sees at the drawn timestep (clean image)."""
    pytest.importorskip('diffusers')
    from helpers.sd_tiny import TINY_DDPM
    tap = 'mid_block.resnets.1.conv2'
    model = distiller(teacher=dict(type='DiffusersUNetBackbone', unet_config=TINY_DDPM,
                                   noise='none', frozen=True), teacher_tap=tap).train()
    seen = []
    model.teacher.unet.get_submodule(tap).register_forward_hook(
        lambda m, a, out: seen.append(out))
    x = images(2, seed=1)[:, :, :16, :16]
    target = model.teacher_features(x, torch.tensor([50, 50]))
    torch.testing.assert_close(target, seen[-1], rtol=0, atol=0)
    assert target.shape == (2, 32, 4, 4)
    losses = model(x, samples([0, 1]), mode='loss')
    losses['loss_distill'].backward()
    assert model.projector.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='teacher_block or teacher_tap'):
        distiller(teacher=dict(type='DiffusersUNetBackbone', unet_config=TINY_DDPM,
                               noise='none', frozen=True), teacher_tap=tap, teacher_block=5)


def test_aux_classifier_is_the_reference_mlp():
    """aux_hidden_layers=2 is the reference's C -> C -> C -> K MLP with two ReLUs (C the
    teacher's channels); 0 keeps a linear classifier; the width can be set."""
    policy = dict(type='LearnedTimestepPolicy', candidates=(10, 50), width=4)
    model = distiller(timestep_policy=policy, num_classes=5, aux_hidden_layers=2)
    layers = list(model.aux_head)
    assert [type(m).__name__ for m in layers] == ['Linear', 'ReLU', 'Linear', 'ReLU', 'Linear']
    assert [(m.in_features, m.out_features) for m in layers[::2]] == [(64, 64), (64, 64),
                                                                       (64, 5)]
    assert model.aux_head(torch.zeros(3, 64)).shape == (3, 5)
    linear = distiller(timestep_policy=policy, num_classes=5).aux_head
    assert isinstance(linear, torch.nn.Linear) and (linear.in_features, linear.out_features) == (64, 5)
    narrow = distiller(timestep_policy=policy, num_classes=5, aux_hidden_layers=1,
                       aux_hidden_channels=16).aux_head
    assert [(m.in_features, m.out_features) for m in narrow[::2]] == [(64, 16), (16, 5)]
    with pytest.raises(ValueError, match='aux_hidden_layers'):
        distiller(timestep_policy=policy, num_classes=5, aux_hidden_channels=16)
    with pytest.raises(ValueError, match='aux_hidden_layers=-1'):
        distiller(timestep_policy=policy, num_classes=5, aux_hidden_layers=-1)


def test_reinforce_without_baseline_is_the_reference_loss():
    """baseline_momentum=None: -mean(r * log p) - entropy_coef * mean(H), and the baseline
    buffer is left alone; the default subtracts the moving-average baseline."""
    x, reward = images(4), torch.tensor([-1.0, -2.0, -0.5, -3.0])
    plain = LearnedTimestepPolicy(candidates=(0, 10, 20), width=4, entropy_coef=0.3,
                                  baseline_momentum=None).train()
    torch.nn.init.normal_(plain.logits.weight)
    out = plain(x)
    expected = -(reward * out.log_prob).mean() - 0.3 * out.entropy.mean()
    torch.testing.assert_close(plain.reinforce_loss(out, reward), expected)
    assert not plain.baseline_ready
    with_baseline = LearnedTimestepPolicy(candidates=(0, 10, 20), width=4, entropy_coef=0.3)
    with_baseline.load_state_dict(plain.state_dict())
    out = with_baseline.train()(x)
    centred = -((reward - reward.mean()) * out.log_prob).mean() - 0.3 * out.entropy.mean()
    torch.testing.assert_close(with_baseline.reinforce_loss(out, reward), centred)
    with pytest.raises(ValueError, match='baseline_momentum=1.5'):
        LearnedTimestepPolicy(candidates=(0, 10), baseline_momentum=1.5)


def test_imagenet_indices_follow_sorted_wnids(tmp_path):
    from mmdiffssl.datasets.imagenet_classes import (dataset_to_imagenet_indices,
                                                     imagenet_indices, imagenet_wnids)
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and list(wnids) == sorted(wnids)
    assert imagenet_indices(['n01443537', 'n01440764', 'n15075141']) == [1, 0, 999]
    # Tiny-ImageNet's wnids.txt is unsorted; dataset label i is the i-th sorted wnid
    listed = tmp_path / 'wnids.txt'
    listed.write_text('n02124075\nn01443537\nn01440764\n')
    assert dataset_to_imagenet_indices(str(listed)) == [0, 1, imagenet_indices(['n02124075'])[0]]
    with pytest.raises(ValueError, match='n99999999'):
        imagenet_indices(['n01440764', 'n99999999'])
    with pytest.raises(ValueError, match='repeat'):
        dataset_to_imagenet_indices(['n01440764', 'n01440764'])


COND_TEACHER = dict(TEACHER, arch=dict(TINY, class_cond=True), class_label='per_image')
COND_TAP = 'middle_block.2.out_layers.3'


def test_per_image_labels_reach_the_class_conditional_teacher():
    """A class-conditional ADM teacher with class_label='per_image' gets each sample's
    gt_label mapped through teacher_class_wnids; the target equals a forward hook on the
    tapped module of the U-Net run with those labels, and changing one image's label changes
    that image's feature alone."""
    wnids = ['n01443537', 'n01440764', 'n15075141']   # labels 0, 1, 2 -> sorted wnids
    model = distiller(teacher=copy.deepcopy(COND_TEACHER), teacher_tap=COND_TAP,
                      teacher_class_wnids=wnids).train()
    assert model.projector.out_channels == model.teacher.tap_shapes()[0].channels == 64
    x, t = images(3), torch.tensor([50, 50, 50])
    labels = model.teacher_labels(samples([0, 1, 2]), x.device)
    assert labels.tolist() == [0, 1, 999]

    seen = []
    model.teacher.unet.get_submodule(COND_TAP).register_forward_hook(
        lambda m, a, out: seen.append(out))
    target = model.teacher_features(x, t, labels)
    torch.testing.assert_close(target, seen[-1], rtol=0, atol=0)
    with torch.no_grad():   # the U-Net itself, y = the ImageNet indices, clean image at t
        model.teacher.unet.forward_intermediates(x, t, (model.teacher.run_until, ),
                                                 y=labels, stop_early=True)
    torch.testing.assert_close(target, seen[-1], rtol=0, atol=0)

    relabelled = model.teacher_features(x, t, model.teacher_labels(samples([0, 2, 2]),
                                                                   x.device))
    assert (relabelled[1] - target[1]).abs().max() > 1e-4
    torch.testing.assert_close(relabelled[[0, 2]], target[[0, 2]])
    losses = model(x, samples([0, 1, 2]), mode='loss')
    losses['loss_distill'].backward()
    assert model.projector.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('kwargs, match', [
    (dict(teacher=COND_TEACHER, teacher_tap=COND_TAP), 'teacher_class_wnids'),
    (dict(teacher_class_wnids=['n01440764']), 'per_image'),
])
def test_per_image_labels_need_both_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distiller(**copy.deepcopy(kwargs))


def test_per_image_label_errors_of_the_backbone():
    init_default_scope('mmpretrain')
    teacher = MODELS.build(copy.deepcopy(COND_TEACHER))
    x, t = images(2), torch.tensor([5, 5])
    with pytest.raises(ValueError, match='pass labels'):
        teacher.intermediates_at(x, t)
    with pytest.raises(ValueError, match=r'\[0, 1000\)'):
        teacher.intermediates_at(x, t, labels=torch.tensor([3, 1000]))
    with pytest.raises(ValueError, match=r'\(2,\) integer tensor'):
        teacher.intermediates_at(x, t, labels=torch.tensor([3]))
    # several timesteps: each image keeps its label at every t
    both = teacher.intermediates(x, timesteps=(5, 20), labels=torch.tensor([3, 7]))[8]
    at = teacher.intermediates_at(torch.cat([x, x]), torch.tensor([5, 5, 20, 20]),
                                  labels=torch.tensor([3, 7, 3, 7]))[8]
    torch.testing.assert_close(both.flatten(0, 1), at)
    unconditional = MODELS.build(copy.deepcopy(TEACHER))
    with pytest.raises(ValueError, match='per_image'):
        unconditional.intermediates_at(x, t, labels=torch.tensor([3, 7]))


def test_tiny_imagenet_config_is_the_reference_recipe():
    """The Tiny-ImageNet stage-one config: OpenAI's class-conditional 64x64 ADM fed each
    image's label, the reference's tap (768 x 8 x 8, checked on the full-size arch on the meta
    device), all 1000 timesteps, no entropy bonus or baseline, the aux MLP, EMA, and
    RandomResizedCrop down to 8% of the area."""
    from mmengine.config import Config
    from mmengine.registry import TRANSFORMS

    from conftest import ROOT
    cfg = Config.fromfile(f'{ROOT}/configs/repfusion/'
                          'repfusion-learned-t_adm-64_resnet18_4xb32-200e_tiny-imagenet-64px.py')
    model = cfg.model
    assert model.teacher.arch == 'adm-64-cond' and model.teacher.class_label == 'per_image'
    assert model.teacher_tap == 'middle_block.2.out_layers.3'
    assert model.teacher_class_wnids.endswith('tiny-imagenet-200/wnids.txt')
    assert model.aux_hidden_layers == 2
    policy = MODELS.build(model.timestep_policy)
    assert policy.candidates() == tuple(range(1000))
    assert policy.entropy_coef == 0.0 and policy.baseline_momentum is None
    assert any(h['type'] == 'EMAHook' and h['momentum'] == 0.001 for h in cfg.custom_hooks)
    init_default_scope('mmpretrain')
    with torch.device('meta'):
        teacher = MODELS.build(dict(model.teacher, checkpoint=None, blocks=(),
                                    taps=(model.teacher_tap, )))
    assert teacher.unet.num_classes == 1000
    shape, = teacher.tap_shapes()
    assert (shape.channels, shape.stride) == (768, 8)
    crop, = [t for t in cfg.train_pipeline if t['type'] == 'RandomResizedCrop']
    with TRANSFORMS.switch_scope_and_registry('mmpretrain') as registry:
        assert registry.build(crop).crop_ratio_range == (0.08, 1.0)
