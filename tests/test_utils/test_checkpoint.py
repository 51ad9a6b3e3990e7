"""Weights files are read by content, and unreadable ones raise errors naming the file and
the format tried (never advising to switch safe loading off)."""
import traceback

import pytest
import torch
from safetensors.torch import save_file

from mmdiffssl.utils.checkpoint import load_state_dict_file

# The errors are CheckpointReadError, a ValueError: caught as ValueError here, so that the
# tests also run (and fail for what they check) on code without it.


@pytest.fixture
def weights():
    gen = torch.Generator().manual_seed(0)
    return {'conv.weight': torch.randn(16, 3, 3, 3, generator=gen),
            'conv.bias': torch.randn(16, generator=gen), 'steps': torch.arange(7)}


def write_torch(path, obj, legacy=False):
    torch.save(obj, str(path), _use_new_zipfile_serialization=not legacy)
    return str(path)


def write_safetensors(path, tensors):
    save_file(tensors, str(path))
    return str(path)


def truncate(path, keep=0.5):
    """Cut the file to a fraction (float) or a number of bytes (int)."""
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep) if isinstance(keep, float) else keep])
    return path


def assert_same(loaded, expected):
    assert sorted(loaded) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


def full_text(excinfo):
    """The error as a user sees it: the message and any chained exception."""
    return ''.join(traceback.format_exception(excinfo.value))


@pytest.mark.parametrize('name,writer,fmt', [
    ('w.pt', 'zip', 'torch-zip'), ('w.pth', 'legacy', 'torch-pickle'),
    ('w.safetensors', 'safetensors', 'safetensors'),
    # misnamed files: the content decides
    ('w_safetensors.pt', 'safetensors', 'safetensors'),
    ('w_torch.safetensors', 'zip', 'torch-zip'),
    ('w_legacy.safetensors', 'legacy', 'torch-pickle'), ('w.bin', 'safetensors', 'safetensors')])
def test_loader_follows_content_not_extension(tmp_path, weights, name, writer, fmt):
    path = tmp_path / name
    if writer == 'safetensors':
        write_safetensors(path, weights)
    else:
        write_torch(path, {'state_dict': weights}, legacy=writer == 'legacy')
    assert_same(load_state_dict_file(str(path)), weights)
    from mmdiffssl.utils.checkpoint import detect_checkpoint_format
    assert detect_checkpoint_format(str(path)) == fmt


@pytest.mark.parametrize('name,writer,format_named', [
    ('trunc.pt', 'zip', "torch.save's zip format"),
    ('trunc_legacy.pth', 'legacy', "torch.save's legacy pickle format"),
    ('trunc.safetensors', 'safetensors', 'safetensors'),
    ('trunc_safetensors_named.pt', 'safetensors', 'safetensors'),
    ('trunc_torch_named.safetensors', 'zip', "torch.save's zip format")])
@pytest.mark.parametrize('keep', [0.5, 0.999, 24])   # 24 bytes: inside the header
def test_truncated_file_names_file_and_format(tmp_path, weights, name, writer, format_named,
                                              keep):
    path = tmp_path / name
    if writer == 'safetensors':
        write_safetensors(path, weights)
    else:
        write_torch(path, weights, legacy=writer == 'legacy')
    truncate(str(path), keep)
    with pytest.raises(ValueError) as excinfo:
        load_state_dict_file(str(path))
    message = str(excinfo.value)
    assert str(path) in message and f'as {format_named}' in message, message
    assert 'weights_only=False' not in full_text(excinfo)


@pytest.mark.parametrize('content,says', [
    (b'', 'too short'), (b'PK\x03\x04', 'too short'),
    (b'{"not": "a checkpoint"}\n', 'not a checkpoint file'),
    (b'\xff\xd8\xff\xe0\x00\x10JFIF\x00' + bytes(100), 'not a checkpoint file'),
    (b'model weights go here\n' * 10, 'not a checkpoint file')])
def test_non_checkpoint_file_is_named(tmp_path, content, says):
    path = tmp_path / 'weights.pt'
    path.write_bytes(content)
    with pytest.raises(ValueError, match=says) as excinfo:
        load_state_dict_file(str(path))
    assert str(path) in str(excinfo.value) and 'safetensors' in str(excinfo.value)


class Opaque:
    """A class safe loading refuses to unpickle."""


def test_pickled_objects_refused_without_unsafe_advice(tmp_path, weights):
    path = write_torch(tmp_path / 'lightning.ckpt', {'state_dict': weights, 'cb': Opaque()})
    with pytest.raises(ValueError) as excinfo:
        load_state_dict_file(path)
    message = str(excinfo.value)
    assert path in message and "torch.save's zip format" in message
    assert 'Opaque' in message and '.safetensors' in message
    assert 'weights_only=False' not in full_text(excinfo)
    assert 'weights_only` set to `False' not in full_text(excinfo)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.pt'):
        load_state_dict_file(str(tmp_path / 'nothing.pt'))


def test_diffusers_single_file_passes_the_named_error_through(tmp_path, weights):
    from mmdiffssl.models.unets.diffusers_loading import load_single_file
    path = truncate(write_safetensors(tmp_path / 'unet.ckpt', weights))
    with pytest.raises(ValueError) as excinfo:
        load_single_file(path)
    assert path in str(excinfo.value) and 'as safetensors' in str(excinfo.value)
    misnamed = write_safetensors(tmp_path / 'unet_st.ckpt', weights)
    assert_same(load_single_file(misnamed), weights)


def test_text_embedding_file_read_by_content(tmp_path):
    from mmdiffssl.models.backbones.sd_backbone import load_embedding_file
    embeds = torch.randn(77, 32, generator=torch.Generator().manual_seed(1))
    misnamed = write_safetensors(tmp_path / 'prompt.pt', {'prompt_embeds': embeds})
    assert torch.equal(load_embedding_file(misnamed), embeds[None])
    as_torch = write_torch(tmp_path / 'prompt.safetensors', embeds)
    assert torch.equal(load_embedding_file(as_torch), embeds[None])
    broken = truncate(write_torch(tmp_path / 'broken.pt', embeds))
    with pytest.raises(ValueError) as excinfo:
        load_embedding_file(broken)
    assert broken in str(excinfo.value) and "torch.save's zip format" in str(excinfo.value)
