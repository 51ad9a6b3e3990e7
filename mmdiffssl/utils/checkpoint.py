"""Safe loading of U-Net weights from ``.pt``, ``.pth`` and ``.safetensors`` files."""
import os.path as osp
from collections.abc import Mapping

import torch

# Containers a training framework may wrap the weights in, tried in this order.
_STATE_DICT_KEYS = ('state_dict', 'model', 'module')


def load_state_dict_file(path, map_location='cpu', key=None):
    """Read a state dict from a checkpoint file without unpickling arbitrary objects.

    ``.safetensors`` files are read with safetensors; everything else with
    ``torch.load(weights_only=True)``. A file holding ``{'state_dict': ...}`` (mmengine),
    ``{'model': ...}`` or ``{'module': ...}`` is unwrapped.

    Args:
        path (str): the checkpoint file.
        map_location: passed to ``torch.load``.
        key (str, optional): the entry holding the weights (e.g. ``'ema_state_dict'``);
            by default the first of ``state_dict``, ``model``, ``module`` that exists.

    Returns:
        dict[str, Tensor]
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path, device=str(map_location))
    obj = torch.load(path, map_location=map_location, weights_only=True)
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


def check_state_dict_fits(module, state_dict, source='checkpoint'):
    """Raise a ValueError listing every missing, unexpected and mis-shaped key.

    Args:
        module (nn.Module): the model the weights are for.
        state_dict (dict[str, Tensor]): the weights.
        source (str): name of where the weights came from, for the message.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}'
                    for k, v in expected.items()
                    if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape))
    if missing or unexpected or shapes:
        def listing(title, items):
            more = f' ... and {len(items) - 20} more' if len(items) > 20 else ''
            return f'\n  {title} ({len(items)}): ' + ', '.join(items[:20]) + more if items else ''
        raise ValueError(f'{source} does not fit {type(module).__name__}:'
                         + listing('missing keys', missing)
                         + listing('unexpected keys', unexpected)
                         + listing('shape conflicts', shapes))


def load_weights(module, path, prefix=None, key=None):
    """Load ``path`` into ``module`` strictly, with a clear error when it does not fit.

    Args:
        module (nn.Module): the model.
        path (str): ``.pt``/``.pth``/``.safetensors`` file (OpenAI's ADM files load as is).
        prefix (str, optional): take only the keys under this prefix, e.g.
            ``'backbone.unet.'`` for a checkpoint of a whole mmengine model.
        key (str, optional): the checkpoint entry holding the weights (see
            :func:`load_state_dict_file`).
    """
    state_dict = load_state_dict_file(path, key=key)
    state_dict = {k: v for k, v in state_dict.items() if torch.is_tensor(v)}
    if prefix:
        state_dict = strip_prefix(state_dict, prefix)
    check_state_dict_fits(module, state_dict, source=path)
    module.load_state_dict(state_dict, strict=True)
