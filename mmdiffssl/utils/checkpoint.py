"""Safe loading of U-Net weights from ``.pt``, ``.pth`` and ``.safetensors`` files."""
import json
import os.path as osp
import pickle
import re
import zipfile
from collections.abc import Mapping

import torch

from mmdiffssl.utils.compat import mmengine_checkpoints_allowed

# Containers a training framework may wrap the weights in, tried in this order.
_STATE_DICT_KEYS = ('state_dict', 'model', 'module')


class CheckpointReadError(ValueError):
    """A weights file that cannot be read; the message names the file and the format tried."""


#: The formats :func:`detect_checkpoint_format` tells apart, with their names in messages.
CHECKPOINT_FORMATS = {
    'safetensors': 'safetensors',
    'torch-zip': "torch.save's zip format",
    'torch-pickle': "torch.save's legacy pickle format",
}


def detect_checkpoint_format(path):
    """Which loader a weights file needs, from its first bytes (the extension is ignored).

    safetensors: an 8-byte little-endian header length, then the JSON header (``{``).
    torch zip (torch >= 1.6): a zip local-file header ``PK\\x03\\x04``. torch legacy: a
    pickle protocol 2-5 opcode ``\\x80``.

    Returns:
        str: a key of :data:`CHECKPOINT_FORMATS`.

    Raises:
        CheckpointReadError: the file is empty or matches none of them.
    """
    with open(path, 'rb') as f:
        head = f.read(16)
    if len(head) < 9:
        raise CheckpointReadError(f"'{path}' has {len(head)} bytes: too short for any "
                                  'checkpoint format (safetensors, torch.save zip or pickle); '
                                  'empty or truncated file?')
    if head[8:9] == b'{':
        return 'safetensors'
    if head.startswith((b'PK\x03\x04', b'PK\x05\x06')):
        return 'torch-zip'
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return 'torch-pickle'
    raise CheckpointReadError(
        f"'{path}' is not a checkpoint file: its first bytes {head!r} match neither "
        'safetensors (an 8-byte little-endian header length, then a JSON header) nor '
        "torch.save's zip or pickle format")


def _read_safetensors(path, map_location):
    """Read a safetensors file, checking its header against the file size first."""
    what = f"cannot read '{path}' as safetensors (detected from its first bytes)"
    size = osp.getsize(path)
    with open(path, 'rb') as f:
        header_len = int.from_bytes(f.read(8), 'little')
        if 8 + header_len > size:
            raise CheckpointReadError(
                f'{what}: the header length field says {header_len} bytes but only '
                f'{size - 8} follow it (truncated file?)')
        try:
            header = json.loads(f.read(header_len))
            end = max((entry['data_offsets'][1] for name, entry in header.items()
                       if name != '__metadata__'), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
            raise CheckpointReadError(f'{what}: its JSON header is malformed '
                                      f'({type(err).__name__}: {err})') from None
    if 8 + header_len + end > size:
        raise CheckpointReadError(
            f'{what}: the header describes {end} bytes of tensor data but the file holds '
            f'{size - 8 - header_len} (truncated file?)')
    from safetensors.torch import load_file
    try:
        return load_file(path, device=str(map_location))
    except Exception as err:   # safetensors raises its own SafetensorError
        raise CheckpointReadError(f'{what}: {type(err).__name__}: {err}') from None


def _safe_reason(err):
    """``err``'s message without torch's advice to switch safe loading off."""
    text = str(err)
    unpickler = re.search(r'WeightsUnpickler error: ([^\n]*?)(?:\. Please|\n|$)', text)
    if unpickler:
        text = unpickler.group(1)
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and 'weights_only' not in line]
    return f"{type(err).__name__}: {' '.join(lines) or 'no message'}"


def _read_torch(path, fmt, map_location):
    """``torch.load(weights_only=True)``, with errors that name the file and the format."""
    what = f"cannot read '{path}' as {CHECKPOINT_FORMATS[fmt]} (detected from its first bytes)"
    if fmt == 'torch-zip':
        try:   # the central directory sits at the end: a truncated file has none
            with zipfile.ZipFile(path):
                pass
        except (zipfile.BadZipFile, OSError) as err:
            raise CheckpointReadError(f'{what}: the zip archive is damaged or truncated '
                                      f'({type(err).__name__}: {err})') from None
    try:
        # a file object, not the path: torch.load would pick safetensors by a
        # '.safetensors' extension
        with open(path, 'rb') as f, mmengine_checkpoints_allowed():  # run checkpoints too
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointReadError(
            f'{what} with safe loading (no arbitrary unpickling): {_safe_reason(err)}. '
            'Store the weights as a plain state dict of tensors (torch.save(model.state_dict(), '
            '...)) or as a .safetensors file') from None
    except Exception as err:
        raise CheckpointReadError(f'{what}: {_safe_reason(err)} (truncated or corrupted '
                                  'file?)') from None


def read_checkpoint_file(path, map_location='cpu'):
    """The object stored in a weights file, read safely with the loader its content needs.

    The format comes from the first bytes (:func:`detect_checkpoint_format`), not the
    extension: a safetensors file named ``.pt`` loads as safetensors, and a ``torch.save``
    file named ``.safetensors`` loads with ``torch.load(weights_only=True)``.

    Returns:
        dict[str, Tensor] for safetensors; whatever ``torch.save`` stored otherwise.

    Raises:
        FileNotFoundError: no such file.
        CheckpointReadError: unknown format, truncated or corrupted file, or objects that safe
            loading refuses; the message names the file and the format tried.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    fmt = detect_checkpoint_format(path)
    if fmt == 'safetensors':
        return _read_safetensors(path, map_location)
    return _read_torch(path, fmt, map_location)


def load_state_dict_file(path, map_location='cpu', key=None):
    """Read a state dict from a checkpoint file without unpickling arbitrary objects.

    The loader is chosen by the file's content (:func:`read_checkpoint_file`): safetensors
    files are read with safetensors, ``torch.save`` files (zip or legacy) with
    ``torch.load(weights_only=True)``, whatever their extension. A file holding
    ``{'state_dict': ...}`` (mmengine), ``{'model': ...}`` or ``{'module': ...}`` is unwrapped.

    Args:
        path (str): the checkpoint file.
        map_location: passed to ``torch.load`` (the device for safetensors).
        key (str, optional): the entry holding the weights (e.g. ``'ema_state_dict'``);
            by default the first of ``state_dict``, ``model``, ``module`` that exists.

    Returns:
        dict[str, Tensor]

    Raises:
        FileNotFoundError, CheckpointReadError: see :func:`read_checkpoint_file`.
    """
    obj = read_checkpoint_file(path, map_location)
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            found = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
            raise KeyError(f"{path} has no entry '{key}' (it has: {found})")
        obj = obj[key]
    else:
        for name in _STATE_DICT_KEYS:
            if isinstance(obj, Mapping) and name in obj and isinstance(obj[name], Mapping):
                obj = obj[name]
                break
    if not isinstance(obj, Mapping):
        raise TypeError(f'{path} holds a {type(obj).__name__}, not a state dict')
    return dict(obj)


def strip_prefix(state_dict, prefix):
    """Keep the entries under ``prefix`` (e.g. ``'backbone.unet.'``) with it removed.

    Raises:
        KeyError: no key starts with ``prefix``.
    """
    out = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not out:
        sample = ', '.join(sorted(state_dict)[:5])
        raise KeyError(f"no key starts with '{prefix}' (first keys: {sample})")
    return out


def check_state_dict_fits(module, state_dict, source='checkpoint', arch_shapes=None):
    """Raise a ValueError listing every missing, unexpected, mis-shaped and mis-typed key.

    Args:
        module (nn.Module): the model the weights are for.
        state_dict (dict[str, Tensor]): the weights.
        source (str): name of where the weights came from, for the message.
        arch_shapes (dict[str, torch.Size], optional): the keys and shapes of the whole
            arch, when ``module`` holds only part of it (a pruned network): the file must
            fit the whole arch.
    """
    expected = module.state_dict()
    shapes = arch_shapes if arch_shapes is not None else {k: v.shape for k, v in expected.items()}
    missing = sorted(set(shapes) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(shapes))
    conflicts = sorted(f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v)}'
                       for k, v in shapes.items()
                       if k in state_dict and tuple(state_dict[k].shape) != tuple(v))
    dtypes = sorted(f'{k}: checkpoint {state_dict[k].dtype} vs model {v.dtype}'
                    for k, v in expected.items()
                    if k in state_dict and v.is_floating_point()
                    and not state_dict[k].is_floating_point())
    if missing or unexpected or conflicts or dtypes:
        def listing(title, items):
            more = f' ... and {len(items) - 20} more' if len(items) > 20 else ''
            return f'\n  {title} ({len(items)}): ' + ', '.join(items[:20]) + more if items else ''
        raise ValueError(f'{source} does not fit {type(module).__name__}:'
                         + listing('missing keys', missing)
                         + listing('unexpected keys', unexpected)
                         + listing('shape conflicts', conflicts)
                         + listing('non-float tensors for float parameters', dtypes))


def load_weights(module, path, prefix=None, key=None, arch_shapes=None):
    """Load ``path`` into ``module`` strictly, with a clear error when it does not fit.

    Args:
        module (nn.Module): the model.
        path (str): ``.pt``/``.pth``/``.safetensors`` file (OpenAI's ADM files load as is).
        prefix (str, optional): take only the keys under this prefix, e.g.
            ``'backbone.unet.'`` for a checkpoint of a whole mmengine model.
        key (str, optional): the checkpoint entry holding the weights (see
            :func:`load_state_dict_file`).
        arch_shapes (dict[str, torch.Size], optional): keys and shapes of the whole arch
            when ``module`` is pruned: the file is checked against them, and only the keys
            ``module`` holds are loaded.
    """
    state_dict = load_state_dict_file(path, key=key)
    state_dict = {k: v for k, v in state_dict.items() if torch.is_tensor(v)}
    if prefix:
        state_dict = strip_prefix(state_dict, prefix)
    check_state_dict_fits(module, state_dict, source=path, arch_shapes=arch_shapes)
    kept = module.state_dict()
    module.load_state_dict({k: v for k, v in state_dict.items() if k in kept}, strict=True)
