"""Bad inputs to the tools are named in their errors: image files, class labels, --arch."""
import json
import os.path as osp
import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from conftest import ROOT, run_tool_result
from mmdiffssl.apis import build_backbone

TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult='1,2,2',
            attention_resolutions='16,8', num_head_channels=16, learn_sigma=False)


@pytest.fixture(scope='module')
def tiny_ckpt(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('unet') / 'unet.pt')
    torch.save(build_backbone(TINY, blocks=(9, ), random_init='redraw', prune=False)
               .unet.state_dict(), path)
    return path


def jpeg_folder(root, count=3):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        paths.append(osp.join(root, f'{i}.jpg'))
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(paths[-1],
                                                                                quality=90)
    return paths


def cut(path, keep):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:keep if isinstance(keep, int) else int(len(data) * keep)])


@pytest.mark.parametrize('keep', [0.6, 100])   # a cut body; a cut header
def test_extract_features_names_a_truncated_jpeg(tmp_path, tiny_ckpt, keep):
    folder = tmp_path / 'images'
    folder.mkdir()
    paths = jpeg_folder(str(folder))
    cut(paths[1], keep)
    out = tmp_path / 'out'
    code, log = run_tool_result(['tools/extract_features.py', str(folder), str(out), '--arch',
                                 json.dumps(TINY), '--blocks', '9', '--timesteps', '100',
                                 '--size', '32', '--batch-size', '2', '--checkpoint', tiny_ckpt])
    assert code != 0
    last = log.strip().splitlines()[-1]
    assert paths[1] in last and 'nothing written' in last, log[-3000:]
    assert not out.exists()


def test_truncated_image_fails_even_when_pil_is_told_to_pad(tmp_path, tiny_ckpt, monkeypatch):
    """Another library may switch PIL's LOAD_TRUNCATED_IMAGES on (PIL then pads the missing
    rows with grey): extraction still refuses the file."""
    from mmdiffssl.apis.extraction import extract_folder
    folder = tmp_path / 'images'
    folder.mkdir()
    paths = jpeg_folder(str(folder), count=2)
    cut(paths[0], 0.6)
    monkeypatch.setattr(ImageFile, 'LOAD_TRUNCATED_IMAGES', True)
    backbone = build_backbone(TINY, blocks=(9, ), timesteps=(100, ), checkpoint=tiny_ckpt)
    with pytest.raises(OSError, match=f"cannot read image '{paths[0]}'"):
        extract_folder(backbone, str(folder), str(tmp_path / 'out'), size=32)
    assert ImageFile.LOAD_TRUNCATED_IMAGES   # the caller's setting is left as it was


@pytest.fixture(scope='module')
def cond_ckpt(tmp_path_factory):
    from mmdiffssl.models.unets import build_adm_unet
    path = str(tmp_path_factory.mktemp('cond') / 'cond.pt')
    torch.save(build_adm_unet(dict(TINY, class_cond=True)).state_dict(), path)
    return path


def sample(arch, checkpoint, out, *extra):
    return run_tool_result(['tools/sample.py', json.dumps(arch), checkpoint, str(out),
                            '--checkpoint-prefix', '', '--num', '1', '--method', 'ddim',
                            '--steps', '2', *extra])


@pytest.mark.parametrize('label', ['1000', '-1'])
def test_sample_class_label_outside_the_arch_classes(tmp_path, cond_ckpt, label):
    code, log = sample(dict(TINY, class_cond=True), cond_ckpt, tmp_path / 's.png',
                       '--class-label', label)
    assert code == 2, log[-2000:]
    assert f'--class-label {label} is outside [0, 1000)' in log, log[-2000:]
    assert not (tmp_path / 's.png').exists()


def test_sample_class_label_on_an_unconditional_arch(tmp_path, tiny_ckpt):
    code, log = sample(TINY, tiny_ckpt, tmp_path / 's.png', '--class-label', '3')
    assert code == 2, log[-2000:]
    assert '--class-label 3 was given, but this arch is not class-conditional' in log
    assert not (tmp_path / 's.png').exists()


def test_sample_valid_class_labels(tmp_path, cond_ckpt):
    code, log = sample(dict(TINY, class_cond=True), cond_ckpt, tmp_path / 's.png')
    assert code == 2 and 'pass --class-label in [0, 1000)' in log, log[-2000:]
    code, log = sample(dict(TINY, class_cond=True), cond_ckpt, tmp_path / 's.png',
                       '--class-label', '999')
    assert code == 0, log[-2000:]
    assert Image.open(tmp_path / 's.png').size == (32, 32)


BAD_JSON = '{"image_size": 32, num_channels: 32}'


@pytest.mark.parametrize('tool', [
    ['tools/extract_features.py', 'IMAGES', 'OUT', '--arch', BAD_JSON],
    ['tools/analysis/visualize_features.py', 'IMAGES', 'OUT.png', '--arch', BAD_JSON,
     '--blocks', '9', '--timesteps', '100'],
    ['tools/benchmark.py', '--arch', BAD_JSON, '--no-reference']])
def test_bad_arch_json_names_the_argument(tmp_path, tool):
    code, log = run_tool_result([str(tmp_path / a) if a.isupper() else a for a in tool])
    last = log.strip().splitlines()[-1]
    assert code != 0
    assert f"--arch {BAD_JSON!r} is not valid JSON" in last, log[-2000:]
    assert 'JSON dict of guided-diffusion flags' in last and 'adm-256-uncond' in last


def test_print_blocks_bad_arch_names_the_argument():
    code, log = run_tool_result(['tools/print_blocks.py', BAD_JSON])
    assert code != 0 and f"arch {BAD_JSON!r} is not valid JSON" in log.strip().splitlines()[-1]


@pytest.mark.parametrize('value,says', [
    (BAD_JSON, 'is not valid JSON'), ('{"image_size": 32', 'is not valid JSON'),
    ('adm-256', 'is neither a preset'), ('["adm-256-uncond"]', 'is neither a preset'),
    ('{"num_chanels": 32}', "unknown guided-diffusion flag(s) ['num_chanels']"),
    ('{"preset": "adm-255"}', "unknown ADM preset 'adm-255'")])
def test_arch_from_argument_errors(value, says):
    from cli_common import arch_from_argument
    with pytest.raises(ValueError) as excinfo:
        arch_from_argument(value)
    message = str(excinfo.value)
    assert message.startswith(f'--arch {value!r}') and says in message, message
    # and what is allowed: the presets, or the accepted flags
    assert 'adm-256-uncond' in message or 'accepted flags: preset, image_size' in message


def test_arch_from_argument_accepts_presets_json_and_configs():
    from cli_common import arch_from_argument
    assert arch_from_argument('adm-256-uncond') == 'adm-256-uncond'
    assert arch_from_argument(json.dumps(TINY)) == TINY
    assert arch_from_argument('{"preset": "adm-64-cond", "num_channels": 64}') == dict(
        preset='adm-64-cond', num_channels=64)
    config = osp.join(ROOT, 'configs/diffssl/linear_adm-tiny_1xb16-4e_folder-32px.py')
    assert arch_from_argument(config)['image_size'] == 32
