"""The feature contract, for every registered diffusion backbone family (timm style).

Each family is built on a tiny model in its real format (ADM flags with re-drawn weights; a
Stable Diffusion, an SDXL, a ``UNet2DModel``, a DiT and a PixArt folder in diffusers'
layout) and every generic
feature runs through :class:`~mmdiffssl.models.backbones.DiffusionBackbone` alone: block
table vs hooked module outputs, the resolvers, pruning with strict loading, the cache key,
the feature and teacher caches, layer decay, DifFeed (or its one refusal), the block table
tool and the PCA grid. A family registered without an entry here fails the first test.
"""
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
from mmengine.registry import DATASETS, MODELS, DefaultScope
from PIL import Image

from mmdiffssl.models.backbones import DiffusionBackbone
from mmdiffssl.registry import registered_class

pytestmark = pytest.mark.usefixtures('one_thread')

ADM_TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult='1,2,2',
                attention_resolutions='16,8', num_head_channels=16, learn_sigma=False)


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    """Tiny diffusers folders (written once per module): SD and a DDPM UNet2DModel."""
    pytest.importorskip('diffusers')
    pytest.importorskip('transformers')
    from diffusers import DDPMScheduler, UNet2DModel

    from helpers.sd_tiny import TINY_DDPM, perturb_, write_tiny_sd
    from helpers.sdxl_tiny import write_tiny_sdxl
    from helpers.transformer_tiny import write_text_file, write_tiny_dit, write_tiny_pixart
    root = tmp_path_factory.mktemp('families')
    sd = str(root / 'sd')
    write_tiny_sd(sd)
    dit = str(root / 'dit')
    write_tiny_dit(dit)
    sdxl = str(root / 'sdxl')
    write_tiny_sdxl(sdxl)
    pixart = str(root / 'pixart')
    write_tiny_pixart(pixart)
    write_text_file(str(root / 'pixart_text.pt'))
    ddpm = str(root / 'ddpm')
    torch.manual_seed(0)
    perturb_(UNet2DModel(**TINY_DDPM), scale=0.05).save_pretrained(osp.join(ddpm, 'unet'))
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(osp.join(ddpm, 'scheduler'))
    return dict(sd=sd, ddpm=ddpm, dit=dit, sdxl=sdxl, pixart=pixart,
                pixart_text=str(root / 'pixart_text.pt'))


def _adm(folders):
    return dict(type='ADMBackbone', arch=ADM_TINY, random_init='redraw'), 32


def _sd(folders):
    return dict(type='SDBackbone', pretrained=folders['sd']), 64


def _ddpm(folders):
    return dict(type='DiffusersUNetBackbone', pretrained=folders['ddpm']), 16


def _dit(folders):
    return dict(type='DiTBackbone', pretrained=folders['dit']), 64


def _sdxl(folders):
    return dict(type='SDXLBackbone', pretrained=folders['sdxl']), 64


def _pixart(folders):
    return dict(type='PixArtBackbone', pretrained=folders['pixart'],
                text=dict(type='file', path=folders['pixart_text'])), 64


#: registered family -> (config without blocks/timesteps, input side)
FAMILIES = {'ADMBackbone': _adm, 'SDBackbone': _sd, 'DiffusersUNetBackbone': _ddpm,
            'DiTBackbone': _dit, 'SDXLBackbone': _sdxl, 'PixArtBackbone': _pixart}


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    needs_folders = request.param != 'ADMBackbone'
    made = request.getfixturevalue('folders') if needs_folders else None
    return FAMILIES[request.param](made)


def build(cfg, **kwargs):
    return MODELS.build(dict(cfg, **kwargs)).eval()


def images(size, batch=2, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def feature_module(bb, row):
    """The module whose output the table says the block's feature is."""
    module = bb.get_submodule(row.module)
    if row.kind == 'middle' or row.module.startswith('unet.input_blocks') or \
            row.module.startswith('unet.output_blocks'):
        return module                        # ADM: the whole block; diffusers mid: the block
    return (getattr(module, 'attentions', None) or module.resnets)[-1]   # before resampler


def test_every_registered_family_is_covered():
    import mmdiffssl  # noqa: F401
    classes = {name: registered_class(MODELS, name) for name in list(MODELS.module_dict)}
    families = {name for name, cls in classes.items()
                if isinstance(cls, type) and issubclass(cls, DiffusionBackbone)}
    assert families == set(FAMILIES), 'add the new family to FAMILIES'


def test_block_table_is_what_the_modules_output(family):
    cfg, size = family
    bb = build(cfg, blocks='all', timesteps=(50, ), noise='none', prune=False)
    table = bb.block_table
    assert [r.index for r in table] == list(range(1, len(table) + 1))
    assert len({r.name for r in table}) == len(table)
    seen, handles = {}, []
    for row in table:
        hook = (lambda i: lambda m, a, out: seen.__setitem__(
            i, out[0] if isinstance(out, tuple) else out))(row.index)
        handles.append(feature_module(bb, row).register_forward_hook(hook))
    x = images(size)
    with torch.no_grad():
        feats = bb.intermediates(x)
    for handle in handles:
        handle.remove()
    for row in table:
        feat = feats[row.index][0]
        side = size // row.stride
        assert feat.shape == (2, row.channels, side, side), row
        ref = seen[row.index].float()
        if ref.dim() == 3:                   # transformer tokens (N, h * w, D)
            ref = ref.transpose(1, 2).unflatten(-1, (side, side))
        torch.testing.assert_close(feat, ref, rtol=0, atol=0, msg=f'{row.name}: {row.feature}')
    assert bb.size_divisibility == max(r.stride for r in table)
    assert [s.channels for s in bb.output_shape()] == [r.channels for r in table]


def test_resolvers_name_the_bad_value(family):
    cfg, _ = family
    bb = build(cfg, blocks='all', timesteps=(1, ))
    n = len(bb.block_table)
    last = bb.block_table[-1]
    assert bb.block_table.resolve(last.name) == bb.block_table.resolve(n) == (n, )
    assert bb.block_table.resolve([1, last.name]) == (1, n)
    for bad in (2.0, True, 0, n + 1, 'no_such_block'):
        with pytest.raises(ValueError, match=f'block {bad!r}|blocks={bad!r}'):
            build(cfg, blocks=(bad, ))
    with pytest.raises(ValueError, match='empty'):
        build(cfg, blocks=())
    steps = bb.schedule.num_steps
    for bad in (0.5, steps, -1, True):
        with pytest.raises(ValueError, match=f'timestep {bad!r}'):
            build(cfg, blocks=(1, ), timesteps=(bad, ))
    with pytest.raises(ValueError, match="timesteps='10'"):
        build(cfg, blocks=(1, ), timesteps='10')


def test_unrun_blocks_stay_off_the_model(family):
    cfg, size = family
    full = build(cfg, blocks=(3, ), timesteps=(10, ), prune=False)
    cut = build(cfg, blocks=(3, ), timesteps=(10, ))
    later = tuple(r.module + '.' for r in cut.block_table if r.index > 3)
    names = [n for n, _ in cut.named_parameters()]
    assert not any(n.startswith(later) for n in names)
    assert any(n.startswith(cut.block_table.row(3).module + '.') for n in names)
    assert sum(p.numel() for p in cut.parameters()) < sum(p.numel() for p in full.parameters())
    x = images(size)
    with torch.no_grad():
        torch.testing.assert_close(cut(x), full(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match='dropped at construction'):
        cut.intermediates(x, blocks=(4, ))


def test_strict_loading_still_checks_the_dropped_blocks(tmp_path):
    from mmdiffssl.models.backbones import ADMBackbone
    src = ADMBackbone(arch=ADM_TINY, blocks='all', random_init='redraw', prune=False)
    state = src.unet.state_dict()
    dropped = 'output_blocks.5.0.out_layers.3.weight'      # block 13, dropped for block 3
    state[dropped] = state[dropped][:, :-1]
    path = str(tmp_path / 'bad.pt')
    torch.save(state, path)
    with pytest.raises(ValueError, match=rf'shape conflicts.*{dropped}'):
        ADMBackbone(arch=ADM_TINY, blocks=(3, ), checkpoint=path)
    state = src.unet.state_dict()
    state.pop('out.2.weight')                              # the output layer is never kept
    torch.save(state, path)
    with pytest.raises(ValueError, match=r'missing keys \(1\): out.2.weight'):
        ADMBackbone(arch=ADM_TINY, blocks=(3, ), checkpoint=path)
    torch.save({k: v.to(torch.int8) if k.endswith('in_layers.2.weight') else v
                for k, v in src.unet.state_dict().items()}, path)
    with pytest.raises(ValueError, match='non-float tensors for float parameters'):
        ADMBackbone(arch=ADM_TINY, blocks=(3, ), checkpoint=path)


def test_strict_loading_of_a_diffusers_folder_checks_dropped_blocks(folders, tmp_path):
    from safetensors.torch import load_file, save_file
    bad = str(tmp_path / 'ddpm')
    shutil.copytree(folders['ddpm'], bad)
    weights = osp.join(bad, 'unet', 'diffusion_pytorch_model.safetensors')
    state = load_file(weights)
    key = next(k for k in state if k.startswith('up_blocks.2.') and k.endswith('conv1.weight'))
    state[key] = state[key][:, :-1].contiguous()
    save_file(state, weights)
    with pytest.raises(Exception, match='size|shape'):
        build(dict(type='DiffusersUNetBackbone', pretrained=bad), blocks=(2, ))


def test_cache_key_covers_what_changes_features_not_the_blocks(family, tmp_path):
    cfg, _ = family
    a = build(cfg, blocks=(2, ), timesteps=(10, )).cache_key()
    b = build(cfg, blocks=(3, ), timesteps=(10, )).cache_key()
    assert a['weights'] == b['weights'] and a['blocks'] != b['blocks']
    assert a != build(cfg, blocks=(2, ), timesteps=(20, )).cache_key()
    assert a != build(cfg, blocks=(2, ), timesteps=(10, ), noise_seed=1).cache_key()
    if cfg['type'] == 'ADMBackbone':
        assert a != build(cfg, blocks=(2, ), timesteps=(10, ), init_seed=1).cache_key()


def test_weights_fingerprint_follows_the_file(folders, tmp_path):
    from safetensors.torch import load_file, save_file
    copy = str(tmp_path / 'ddpm')
    shutil.copytree(folders['ddpm'], copy)
    cfg = dict(type='DiffusersUNetBackbone', pretrained=copy)
    before = build(cfg, blocks=(2, )).cache_key()['weights']
    weights = osp.join(copy, 'unet', 'diffusion_pytorch_model.safetensors')
    state = load_file(weights)
    state['conv_in.bias'] = state['conv_in.bias'] + 1
    save_file(state, weights)
    assert build(cfg, blocks=(2, )).cache_key()['weights'] != before


# ---------------------------------------------------------------------- generic features
def image_folder(root, size, count=6):
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = osp.join(root, f'class{i % 2}')
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            osp.join(folder, f'{i}.png'))
    return dict(type='mmpretrain.CustomDataset', data_root=root, with_label=True,
                pipeline=[dict(type='mmpretrain.LoadImageFromFile'),
                          dict(type='mmpretrain.PackInputs')])


PREPROCESSOR = dict(type='mmpretrain.ClsDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3,
                    to_rgb=True)


def test_feature_cache_fills_once_and_equals_online(family, tmp_path):
    pytest.importorskip('mmpretrain')
    from mmdiffssl.datasets import CachedFeatureDataset
    cfg, size = family
    backbone = dict(cfg, blocks=(2, 3), timesteps=(10, 40), noise='fixed')
    data = image_folder(str(tmp_path / 'images'), size)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        first = CachedFeatureDataset(data, backbone, PREPROCESSOR, str(tmp_path / 'cache'), pool=2,
                                     batch_size=4)
        again = CachedFeatureDataset(data, backbone, PREPROCESSOR, str(tmp_path / 'cache'), pool=2)
        item = first[1]
        bgr = DATASETS.build(data)[1]['inputs'].float()[None]
    pixels = bgr.flip(1) / 127.5 - 1                       # the preprocessor: RGB, [-1, 1]
    assert first.fill_reason == 'no complete cache' and again.fill_reason is None
    with torch.no_grad():
        online = build(backbone)(pixels)
    expected = torch.cat([torch.nn.functional.adaptive_avg_pool2d(f, 2).flatten(1)
                          for f in online], 1)[0]
    torch.testing.assert_close(item['inputs'].float().flatten(), expected, rtol=1e-2, atol=1e-2)


def test_teacher_cache(family, tmp_path):
    pytest.importorskip('mmpretrain')
    from mmdiffssl.datasets import TeacherFeatureDataset
    cfg, size = family
    data = image_folder(str(tmp_path / 'images'), size)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = TeacherFeatureDataset(data, dict(cfg, blocks=(3, ), timesteps=(20, )),
                                        PREPROCESSOR, str(tmp_path / 'cache'), pool=1)
        sample = dataset[0]['data_samples']
    channels = build(cfg, blocks=(3, )).block_table.row(3).channels
    assert sample.teacher_feature.shape == (channels, 1, 1)


def test_layer_decay_groups_follow_the_table(family):
    from mmdiffssl.engine import block_layer_ids
    cfg, _ = family
    bb = build(cfg, blocks=(4, ), frozen=False)
    ids, num_layers = block_layer_ids(bb, prefix='')
    net = bb.network_attr + '.'
    assert num_layers == 5
    for name, layer in ids.items():
        row = next((r for r in bb.block_table if name.startswith(r.module + '.')), None)
        if row is not None:
            assert layer == row.index, name
        elif name.startswith(net):
            assert layer == 0, name          # stem and embeddings feed every block
    assert {ids[n] for n in ids if n.startswith(net)} == set(range(5))


def test_trainable_from_freezes_the_table_prefix(family):
    cfg, _ = family
    bb = build(cfg, blocks=(4, ), frozen=False, trainable_from=3)
    for name, param in bb.named_parameters():
        if not name.startswith(bb.network_attr + '.'):
            continue
        row = next((r for r in bb.block_table if name.startswith(r.module + '.')), None)
        assert param.requires_grad == (row is not None and row.index >= 3), name


def test_difeed_runs_or_refuses_in_one_place(family):
    from mmdiffssl.models.classifiers import DifFeedBackbone
    cfg, size = family
    table = build(cfg, blocks='all').block_table
    decoder = [r.index for r in table if r.kind == 'output'] or [r.index for r in table]
    inner = dict(cfg, blocks=(decoder[0], ), timesteps=(10, ))
    if not registered_class(MODELS, cfg['type']).supports_injections:
        with pytest.raises(ValueError, match=r'\(.*\) does not support DifFeed'):
            DifFeedBackbone(inner, feedback_blocks=decoder[1:])
        return
    model = DifFeedBackbone(inner, feedback_blocks=decoder[1:])
    assert model.adm.run_until == max(decoder)
    out = model(images(size))
    assert out[0].shape[1] == model.out_channels[0]


def test_print_blocks_and_pca(family):
    from mmdiffssl.analysis import feature_pca_grid
    from mmdiffssl.apis.blocks import block_table_lines
    cfg, size = family
    lines = block_table_lines(cfg, size)
    bb = build(cfg, blocks=(1, 2), timesteps=(10, 30))
    for row in bb.block_table:
        assert any(f' {row.name} ' in line for line in lines), row.name
    grid = feature_pca_grid(bb, images(size), (1, 2), (10, 30))
    assert grid.shape == (2 * size, 5 * size, 3) and grid.dtype == np.uint8


def test_frozen_bf16_weights_halve_the_bytes(family):
    cfg, size = family
    fp32 = build(cfg, blocks=(3, ), timesteps=(10, ), dtype='bf16')
    bf16 = build(cfg, blocks=(3, ), timesteps=(10, ), dtype='bf16', frozen_dtype='bf16')

    def network_bytes(bb):
        return sum(p.numel() * p.element_size() for n, p in bb.named_parameters()
                   if n.startswith(bb.network_attr + '.'))
    assert network_bytes(bf16) * 2 == network_bytes(fp32)
    x = images(size)
    with torch.no_grad():
        a, b = fp32(x)[0].flatten(1), bf16(x)[0].flatten(1)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99
    with pytest.raises(ValueError, match="frozen_dtype='bf16' needs frozen=True and dtype='bf16'"):
        build(cfg, blocks=(3, ), frozen_dtype='bf16')


def test_building_a_backbone_leaves_the_global_rng_alone(family):
    """Random weights come from the backbone's own seeded generator: the head built after it
    starts from the same weights whether the backbone was built or not (cached vs online)."""
    cfg, _ = family
    torch.manual_seed(123)
    build(cfg, blocks=(2, ))
    after = torch.rand(4)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(4))


def test_pixels_outside_minus_one_one_are_refused(family):
    cfg, size = family
    bb = build(cfg, blocks=(1, ))
    with pytest.raises(ValueError, match=r'input pixels span \[0, 255\]; expected \[-1, 1\]'):
        bb(torch.linspace(0, 255, 3 * size * size).reshape(1, 3, size, size))
    bb(images(size))      # fine, and later batches are not checked again
    assert bb._pixel_range_checked
