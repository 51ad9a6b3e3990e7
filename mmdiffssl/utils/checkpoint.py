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
