"""The pixel range diffusion U-Nets expect: floats in [-1, 1].

A U-Net trained on images in [-1, 1] takes pixels in [0, 255] (a data preprocessor without
``mean=std=127.5``) without complaint and returns features or losses of nothing it was
trained on. :func:`check_pixel_range` raises instead, naming the range it saw. It costs one
device-to-host sync, so callers check the first batch only (:func:`check_pixel_range_once`
keeps the flag on the caller) and later batches pay nothing.
"""
import torch

#: The range the U-Nets were trained on.
EXPECTED_RANGE = (-1.0, 1.0)
#: What is accepted: [-1, 1] with slack for interpolation overshoot (bicubic resizing,
#: anti-aliasing) and padding values.
ACCEPTED_RANGE = (-1.5, 1.5)


def check_pixel_range(x, where, accepted=ACCEPTED_RANGE):
    """Raise a ValueError when ``x`` is not a float image batch in [-1, 1] (with slack).

    Args:
        x (Tensor): the pixels, e.g. ``(B, 3, H, W)``.
        where (str): who is checking, for the message (e.g. ``'ADMBackbone'``).
        accepted (tuple): the ``(low, high)`` accepted; default [-1.5, 1.5].

    Skips tensors without values (empty, or on the meta device), traced or compiled graphs
    and CUDA-graph capture. One host sync (the min and max) per call.

    Raises:
        ValueError: integer pixels, values outside ``accepted``, or NaN; the message gives
            the range seen and the expected one.
    """
    if x.numel() == 0 or x.device.type == 'meta' or _tracing():
        return
    if not x.is_floating_point():
        raise ValueError(f'{where}: input pixels are {x.dtype}; expected floats in [-1, 1] '
                         '(normalise with mean = std = 127.5, e.g. in the data preprocessor)')
    low, high = (float(v) for v in torch.aminmax(x.detach()))
    if not (accepted[0] <= low and high <= accepted[1]):   # False for NaN too
        hint = (' (that looks like [0, 255]: normalise with mean = std = 127.5, e.g. in the '
                'data preprocessor)' if high > 2.0 else '')
        raise ValueError(f'{where}: input pixels span [{low:.4g}, {high:.4g}]; expected '
                         f'[{EXPECTED_RANGE[0]:g}, {EXPECTED_RANGE[1]:g}] (accepted up to '
                         f'[{accepted[0]:g}, {accepted[1]:g}]){hint}')


def check_pixel_range_once(owner, x, where=None):
    """:func:`check_pixel_range` on the first batch ``owner`` sees, nothing afterwards.

    The flag ``owner._pixel_range_checked`` is set once a batch passed, so later calls cost
    one attribute lookup and no host sync. ``where`` defaults to the owner's class name.
    """
    if getattr(owner, '_pixel_range_checked', False):
        return
    check_pixel_range(x, where or type(owner).__name__)
    if x.numel() and x.device.type != 'meta' and not _tracing():
        owner._pixel_range_checked = True


def _tracing():
    """Inside torch.compile, jit tracing or CUDA-graph capture (no host sync possible)."""
    compiling = getattr(getattr(torch, 'compiler', None), 'is_compiling', None)
    if (compiling is not None and compiling()) or torch.jit.is_tracing():
        return True
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


#: The data preprocessor a classification config gets when its config names no type.
CLS_PREPROCESSOR = 'mmpretrain.ClsDataPreprocessor'


def classification_preprocessor(preprocessor=None, fallback=None):
    """A data preprocessor config: ``preprocessor``, else ``fallback``, else ``{}``, typed
    :data:`CLS_PREPROCESSOR` when untyped.

    The Runner builds a model with its own ``model.data_preprocessor`` and falls back to
    the top-level ``data_preprocessor``: pass them in that order, so that every consumer of
    a config's preprocessing (feature caches, the sweep and its key, RepFusion) normalises
    as the model does.

    Returns:
        dict: a new dict.
    """
    config = dict(preprocessor or fallback or {})
    config.setdefault('type', CLS_PREPROCESSOR)
    return config


def model_preprocessor(cfg):
    """The data preprocessor config the model of ``cfg`` is built with (its
    ``model.data_preprocessor``, else the top-level one), typed as above."""
    return classification_preprocessor(cfg['model'].get('data_preprocessor'),
                                       cfg.get('data_preprocessor'))
