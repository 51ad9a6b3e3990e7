"""Fixes for running mmengine 0.10.x on today's torch, applied where they are needed.

torch >= 2.6 loads checkpoints with ``weights_only=True`` by default. mmengine 0.10.7 calls
``torch.load`` without the argument, and its own checkpoints hold a few non-tensor objects
(the message hub's ``HistoryBuffer`` with numpy arrays, numpy scalars and dtypes). Rather than
turning safe loading off for every file (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``), the exact
classes mmengine writes are allow-listed, so resuming and ``Pretrained`` init work while any
other pickled object in a checkpoint is still refused. The first build of an mmdiffssl module
allow-lists them for the process (:mod:`mmdiffssl.registry`: that process resumes or
initialises from mmengine checkpoints); our own checkpoint reader allows them only for the
duration of a read (:func:`mmengine_checkpoints_allowed`).
"""
import contextlib
import pickle

import numpy as np
import torch


def _numpy_safe_globals():
    """The numpy callables and types a pickled ndarray or numpy scalar refers to."""
    core = getattr(np, '_core', None) or np.core  # numpy 2 renamed np.core to np._core
    names = [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype]
    # numpy >= 1.25 pickles dtypes by their class (np.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        names += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return names


def _history_buffer_getattr(obj, name):
    """``getattr`` as the unpickler may call it: only on mmengine's HistoryBuffer.

    A pickled HistoryBuffer refers to its own bound statistics methods (``min``, ``max``,
    ...) through ``builtins.getattr``; any other use of getattr in a checkpoint is refused.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer or isinstance(obj, HistoryBuffer):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({type(obj).__name__}, {name!r}); only HistoryBuffer '
        'attributes are allowed with weights_only loading')


def mmengine_safe_globals():
    """Everything beyond tensors that mmengine 0.10.x puts in a checkpoint."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return ([HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')]
            + _numpy_safe_globals())


def allow_mmengine_checkpoints():
    """Allow-list mmengine's checkpoint contents for ``torch.load(weights_only=True)``.

    Idempotent; a no-op on torch versions without ``add_safe_globals``.
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:
        add(mmengine_safe_globals())


@contextlib.contextmanager
def mmengine_checkpoints_allowed():
    """mmengine's checkpoint contents allow-listed inside the block only (torch's
    ``safe_globals`` context; a no-op on torch versions without it).

    Only the entries not yet allowed are added: torch's context removes what it was given
    on exit, which would also undo :func:`allow_mmengine_checkpoints`.
    """
    scoped = getattr(torch.serialization, 'safe_globals', None)
    if scoped is None:
        yield
        return
    allowed = set(torch.serialization.get_safe_globals())
    with scoped([g for g in mmengine_safe_globals() if g not in allowed]):
        yield
