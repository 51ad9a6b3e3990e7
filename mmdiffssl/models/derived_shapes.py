"""What heads, necks and data preprocessors read from the backbone, derived from it.

The model classes ``DiffSSLClassifier`` (mmpretrain), ``DiffMaskRCNN`` (mmdet) and
``DiffEncoderDecoder`` (mmseg) call these functions in their constructors, before their
parents build anything: the backbone config is built on the meta device
(:func:`~mmdiffssl.models.backbones.base.shapes_only`: no weights read) and its
``output_shape()`` fills what the config leaves out (a missing key, or ``None``):

======================================  ===================================================
config key                              derived from the backbone
======================================  ===================================================
cls head ``in_channels``                ``out_channels`` at the head's ``feat_index`` (all
                                        outputs for DifFormer; the last for mmpretrain heads)
cls head ``in_sizes``                   ``native_resolution // stride`` at those outputs
cls head ``num_timesteps``              ``len(timesteps)`` ('concat' fusion), 1 ('mean')
cls head ``blocks`` / ``timesteps``     the backbone's (where the head requires them)
neck ``in_channels``                    ``out_channels`` (a list; one entry at ``in_index``
                                        for necks with an int ``in_index``: DiffSimpleFPN)
decode/auxiliary head ``in_channels``   ``out_channels`` at ``in_index`` (list or int)
mmdet ``pad_size_divisor``              ``size_divisibility``
mmseg ``size_divisor``, ``test_cfg``    ``size_divisibility`` (``size_divisor`` only when no
                                        fixed ``size`` is given)
======================================  ===================================================

A value the config does give is compared instead, and a disagreement raises ``ValueError``
naming the field, the config's value and the backbone's. Padding divisors may be any
multiple of ``size_divisibility``; given ``in_sizes`` may be those of another input size
than the native resolution (the backbone cannot know the training input size), but must be
the sizes of one input size at the backbone's strides, compared as the head pools them
(``min(size, pool_size)``). Only keys the head, neck or preprocessor class accepts are filled (its constructor's
signature, followed through ``**kwargs`` into its bases). Backbones that report no shapes
(e.g. mmpretrain's ResNet) leave the config as it is.

Shapes come from a backbone's ``output_shape()`` (``DiffusionBackbone``, ``DifFeedBackbone``),
from ``out_channels``/``out_strides`` (``PixelBackbone``) or from the ``layout`` of
``CachedFeatures`` (the feature cache's stand-in backbone: channels, block and the cached
``(h, w)``; it knows no timesteps, so ``num_timesteps`` is then left to the config).
"""
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

from mmengine.registry import MODELS
from torch import nn

from mmdiffssl.models.backbones.base import shapes_only
from mmdiffssl.registry import registered_class

HINT = 'python tools/print_blocks.py CONFIG lists its blocks'
#: mmpretrain necks that keep the channels of the map they pool.
CHANNEL_KEEPING_NECKS = ('GlobalAveragePooling', 'GeneralizedMeanPooling')


@dataclass(frozen=True)
class BackboneShapes:
    """What a backbone tells its consumers, per output (in output order).

    Attributes:
        name: the backbone's type, for messages.
        channels: channels of each output.
        strides: input size / output size of each output (None: unknown).
        sizes: each output's ``(h, w)`` at the backbone's native resolution, or the cached
            size for ``CachedFeatures`` (None: unknown).
        blocks: the backbone's ``blocks`` (None: unknown).
        outputs: what each output is (``output_names()``: a block number, a tap name,
            ``'stride4'``; None: unknown).
        timesteps: the backbone's timesteps (None: unknown).
        fuse: its ``fuse_timesteps`` (None: unknown).
        size_divisibility: input sides must be multiples of this (None: any).
    """
    name: str
    channels: tuple
    strides: Optional[tuple] = None
    sizes: Optional[tuple] = None
    blocks: Optional[tuple] = None
    outputs: Optional[tuple] = None
    timesteps: Optional[tuple] = None
    fuse: Optional[str] = None
    size_divisibility: Optional[int] = None

    @property
    def fused_timesteps(self):
        """Timesteps in each output: ``len(timesteps)`` under 'concat', 1 under 'mean'."""
        if self.timesteps is None or self.fuse is None:
            return None
        return len(self.timesteps) if self.fuse == 'concat' else 1

    def describe(self):
        """The backbone in words, for error messages."""
        parts = [f'out_channels {list(self.channels)}']
        if self.outputs is not None:
            parts.append(f'outputs {tuple(self.outputs)}')
        if self.timesteps is not None:
            parts.append(f'timesteps {tuple(self.timesteps)}, fuse_timesteps={self.fuse!r}')
        return f"{self.name} ({'; '.join(parts)})"


# ---------------------------------------------------------------------- the backbone's shapes
def _registered(kind):
    """The class (or builder) a config ``type`` names, looked up as MODELS.build would
    (mmdiffssl's lazily registered names give their class)."""
    if not isinstance(kind, str):
        return kind
    with MODELS.switch_scope_and_registry(None) as registry:
        return registered_class(registry, kind)


def reports_shapes(cfg):
    """Whether a backbone config names a type that reports its output shapes (ours, or any
    class with ``output_shape``): only those are built for the derivation."""
    if isinstance(cfg, nn.Module):
        return True
    if not isinstance(cfg, Mapping) or 'type' not in cfg:
        return False
    cls = _registered(cfg['type'])
    if cls is None:
        return False
    return hasattr(cls, 'output_shape') or cls.__module__.startswith('mmdiffssl.')


def _wrapped(module, name):
    """``module.name``, or that of the backbone it wraps (DifFeedBackbone's ``adm``)."""
    value = getattr(module, name, None)
    if value is None and isinstance(getattr(module, 'adm', None), nn.Module):
        value = getattr(module.adm, name, None)
    return value


def _output_name(output):
    return f'block {output}' if isinstance(output, int) else repr(output)


def _size(h, w):
    return h if h == w else (h, w)


def shapes_of(module):
    """:class:`BackboneShapes` of a built backbone, or None where it reports none."""
    name = type(module).__name__
    layout = getattr(module, 'layout', None)
    if hasattr(module, 'output_shape'):
        specs = module.output_shape()
        channels = tuple(int(s.channels) for s in specs)
        strides = tuple(int(s.stride) for s in specs)
    elif layout is not None:       # CachedFeatures: [(output, channels, h, w)]
        outputs = tuple(o for o, _, _, _ in layout)
        return BackboneShapes(
            name, channels=tuple(int(c) for _, c, _, _ in layout),
            sizes=tuple(_size(int(h), int(w)) for _, _, h, w in layout), outputs=outputs,
            blocks=tuple(o for o in outputs if isinstance(o, int)))
    elif getattr(module, 'out_channels', None) is not None:
        channels = tuple(int(c) for c in module.out_channels)
        strides = getattr(module, 'out_strides', None)
        strides = None if strides is None else tuple(int(s) for s in strides)
    else:
        return None
    blocks = _wrapped(module, 'blocks')
    blocks = None if blocks is None else tuple(blocks)
    names = _wrapped(module, 'output_names')
    outputs = None if names is None else tuple(names())
    if outputs is None and blocks is not None and len(blocks) == len(channels):
        outputs = blocks
    timesteps = _wrapped(module, 'timesteps')
    native = _wrapped(module, 'native_resolution')
    sizes = None
    if native and strides is not None:
        sizes = tuple(int(native) // s for s in strides)
    return BackboneShapes(
        name, channels=channels, strides=strides, sizes=sizes, blocks=blocks,
        outputs=outputs,
        timesteps=None if timesteps is None else tuple(int(t) for t in timesteps),
        fuse=_wrapped(module, 'fuse_timesteps'),
        size_divisibility=_wrapped(module, 'size_divisibility'))


def backbone_shapes(backbone):
    """:class:`BackboneShapes` of a built backbone or of a backbone config.

    A config is built under :func:`~mmdiffssl.models.backbones.base.shapes_only` (meta
    device, no weights read, in the current default scope); configs of backbones that
    report no shapes (see :func:`reports_shapes`) give None.
    """
    if isinstance(backbone, nn.Module):
        return shapes_of(backbone)
    if not reports_shapes(backbone):
        return None
    with shapes_only():
        module = MODELS.build(dict(backbone))
    return shapes_of(module)


# ---------------------------------------------------------------------- helpers
def accepted_args(cls):
    """``{name: default}`` of the keyword arguments ``cls(...)`` takes.

    Followed through ``**kwargs`` into the bases' constructors (mmseg's ``UPerHead`` passes
    ``in_channels`` on to ``BaseDecodeHead``); names in ``cls.derived_by_head`` (arguments
    a head computes itself, e.g. DifFormer's ``feat_index``) are left out. Builder
    functions: their own parameters.
    """
    params = {}
    classes = cls.__mro__ if inspect.isclass(cls) else (cls, )
    for klass in classes:
        if klass is object:
            break
        init = klass.__dict__.get('__init__') if inspect.isclass(klass) else klass
        if init is None:
            continue
        more = False
        for name, param in list(inspect.signature(init).parameters.items()):
            if name == 'self':
                continue
            if param.kind is param.VAR_KEYWORD:
                more = True
            elif param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                params.setdefault(name, param.default)
        if not more:
            break
    for name in getattr(cls, 'derived_by_head', ()):
        params.pop(name, None)
    return params


def _given(cfg, key):
    """The config's (or built module's) value of ``key``; None when left out."""
    if isinstance(cfg, Mapping):
        return cfg.get(key)
    return getattr(cfg, key, None)


def _setting(cfg, key, params):
    """A key's value: the config's, else the class default (None if it has none)."""
    value = _given(cfg, key)
    if value is None:
        default = params.get(key, inspect.Parameter.empty)
        value = None if default is inspect.Parameter.empty else default
    return value


def _plain(value):
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def _disagree(where, field, given, derived, shapes, why=''):
    return ValueError(
        f'{where}: {field}={_plain(given)!r} in the config, but the backbone gives '
        f'{field}={_plain(derived)!r}{why}; backbone: {shapes.describe()}. Leave {field} out '
        f'of the config to derive it ({HINT})')


def _indices(index, count, where, shapes):
    """Normalised output indices (negative ones counted from the end), range-checked."""
    out = []
    for i in (index if isinstance(index, Sequence) else (index, )):
        if not -count <= int(i) < count:
            raise ValueError(f'{where} reads backbone output {i}, but the backbone has '
                             f'{count} outputs; backbone: {shapes.describe()}')
        out.append(int(i) % count)
    return out


def _where(owner, part, cfg):
    kind = _given(cfg, 'type')
    kind = type(cfg).__name__ if kind is None else getattr(kind, '__name__', kind)
    return f'{owner} {part} ({kind})'


def _class_of(cfg):
    if isinstance(cfg, nn.Module):
        return type(cfg)
    return _registered(cfg.get('type')) if isinstance(cfg, Mapping) else None


def _copy(cfg):
    """A shallow copy that keeps the config's type (mmdet reads ConfigDict attributes)."""
    return cfg.copy() if hasattr(cfg, 'copy') else dict(cfg)


# ---------------------------------------------------------------------- classification heads
def _pooled(size, pool):
    h, w = (size, size) if not isinstance(size, Sequence) else size
    return (h, w) if pool is None else (min(int(h), int(pool)), min(int(w), int(pool)))


def _check_blocks(where, given, shapes):
    given = tuple(given)
    if given != shapes.blocks:
        hint = (' (same blocks in another order: the head would read each output with '
                "another block's layers)" if sorted(given) == sorted(shapes.blocks) else '')
        raise _disagree(where, 'blocks', given, shapes.blocks, shapes, hint)


def _check_timesteps(where, given, shapes):
    given = tuple(given)
    if given != shapes.timesteps:
        raise _disagree(where, 'timesteps', given, shapes.timesteps, shapes,
                        ' (same timesteps, in the same order)')
    if len(given) > 1 and shapes.fuse != 'concat':
        raise ValueError(f"{where} reads every timestep separately: the backbone needs "
                         f"fuse_timesteps='concat', not {shapes.fuse!r}; backbone: "
                         f'{shapes.describe()}')


def _sides(size):
    return (size, size) if not isinstance(size, Sequence) else tuple(size)


def _check_in_sizes(where, given, derived, strides, pool, shapes, at):
    """Given ``in_sizes`` must be the feature sizes of one input size (the backbone cannot
    know the training input size: any works, its sizes follow from the strides), compared
    as the head pools them (``min(size, pool)``). Without strides (cached features) they
    must equal the derived (cached) sizes."""
    count = len(strides if strides is not None else derived or ())
    if not count:
        return
    values = list(given) if isinstance(given, Sequence) else [given] * count
    if len(values) != count:
        raise _disagree(where, 'in_sizes', given, derived, shapes,
                        f' ({count} selected outputs{at})')
    values = [_pooled(v, pool) for v in values]
    if strides is None:
        if values != [_pooled(d, pool) for d in derived]:
            raise _disagree(where, 'in_sizes', given, derived, shapes, at)
        return
    raw = [_sides(v) for v in (list(given) if isinstance(given, Sequence) else [given] * count)]
    for axis in (0, 1):
        fits = any(all(_pooled(side // st, pool)[0] == v[axis] for st, v in zip(strides, values))
                   for side in {r[axis] * st for r, st in zip(raw, strides)})
        if not fits:
            why = (f'{at} at its native resolution, and no input size gives the config\'s '
                   f'sizes at its strides {strides}'
                   + (f' (pooled to at most {pool})' if pool is not None else ''))
            if derived is None:
                raise ValueError(f'{where}: in_sizes={_plain(given)!r} in the config, but no '
                                 f'input size gives these sizes at the backbone\'s strides '
                                 f'{strides}; backbone: {shapes.describe()}')
            raise _disagree(where, 'in_sizes', given, derived, shapes, why)


def derive_cls_head(head, shapes, owner='DiffSSLClassifier', neck=None):
    """A classification head config with what the backbone knows filled in (or checked).

    Args:
        head (dict | nn.Module | None): the head config (a built head is only checked).
        shapes (BackboneShapes): the backbone's.
        owner (str): the model, for messages.
        neck (dict | nn.Module, optional): the neck between backbone and head: the head's
            ``in_channels`` and ``in_sizes`` are then derived only through necks that keep
            channels (global pooling; sizes never), and left to the config otherwise.

    Returns:
        the head config (a copy when something was filled), or the module.
    """
    cls = _class_of(head)
    if head is None or cls is None:
        return head
    where = _where(owner, 'head', head)
    params = accepted_args(cls)
    fill = {}
    count = len(shapes.channels)
    if getattr(cls, 'reads_all_outputs', False):
        indices, single = list(range(count)), False
    elif 'feat_index' in params:
        index = _setting(head, 'feat_index', params)
        index = -1 if index is None else index
        indices = _indices(index, count, where, shapes)
        single = not isinstance(index, Sequence)
    else:                      # mmpretrain heads read the last output
        indices, single = [count - 1], True
    at = f' at backbone output{"" if single else "s"} {indices[0] if single else indices}'
    if shapes.outputs is not None:
        names = [_output_name(shapes.outputs[i]) for i in indices]
        at += f' ({names[0] if single else ", ".join(names)})'
    neck_type = None if neck is None else _class_of(neck)
    channels_known = neck is None or getattr(neck_type, '__name__', '') in CHANNEL_KEEPING_NECKS

    if 'in_channels' in params and channels_known:
        derived = [shapes.channels[i] for i in indices]
        given = _given(head, 'in_channels')
        if given is None:
            fill['in_channels'] = derived[0] if single else tuple(derived)
        else:
            values = list(given) if isinstance(given, Sequence) else [given] * len(derived)
            if [int(v) for v in values] != derived:
                raise _disagree(where, 'in_channels', given,
                                derived[0] if single else derived, shapes, at)

    if 'in_sizes' in params and neck is None:
        given = _given(head, 'in_sizes')
        derived = None if shapes.sizes is None else [shapes.sizes[i] for i in indices]
        if given is None:
            if derived is None:
                raise ValueError(f'{where}: in_sizes cannot be derived: the backbone '
                                 f'reports no native resolution ({shapes.describe()}); '
                                 'give in_sizes in the config')
            one = single and not isinstance(derived[0], Sequence)   # (h, w) pairs: a list
            fill['in_sizes'] = derived[0] if one else tuple(derived)
        else:
            pool = _setting(head, 'pool_size', params) if 'pool_size' in params else None
            strides = None if shapes.strides is None else [shapes.strides[i] for i in indices]
            _check_in_sizes(where, given, derived, strides, pool, shapes, at)

    fused = shapes.fused_timesteps
    if 'num_timesteps' in params and fused is not None:
        given = _given(head, 'num_timesteps')
        if given is None:
            fill['num_timesteps'] = fused
        elif int(given) != fused:
            raise _disagree(where, 'num_timesteps', given, fused, shapes,
                            f' (timesteps fused into each output: {len(shapes.timesteps)} '
                            f"timesteps, fuse_timesteps={shapes.fuse!r})")

    for key, known, check in (('blocks', shapes.blocks, _check_blocks),
                              ('timesteps', shapes.timesteps, _check_timesteps)):
        if key not in params or known is None:
            continue
        given = _given(head, key)
        if given is not None:
            check(where, given, shapes)
        elif params[key] is not None:   # the head needs them (DifFormer); None: optional
            if key == 'timesteps':
                check(where, known, shapes)    # several timesteps need 'concat'
            fill[key] = tuple(known)

    if not fill or isinstance(head, nn.Module):
        return head
    head = _copy(head)
    head.update(fill)
    return head


# ---------------------------------------------------------------------- necks, dense heads
def derive_in_channels(cfg, shapes, owner, part='neck', last=False):
    """A neck or decode head config with ``in_channels`` filled from the backbone (or checked).

    ``in_channels`` is the channels at ``in_index`` where the class takes an ``in_index``
    (an int gives an int, a list a list; for an int, the list of every output's channels
    is accepted too: DiffSimpleFPN picks its map from it), else the list of every
    output's channels (mmdet's FPN), or the last output's with ``last`` (mmpretrain
    necks read the last map).

    Args:
        cfg (dict | None): the config (a built module is left as it is).
        shapes (BackboneShapes): the backbone's.
        owner (str): the model, for messages.
        part (str): the config key of the part, for messages.
        last (bool): classes without ``in_index`` read the last output only.
    """
    cls = _class_of(cfg)
    if cfg is None or cls is None or isinstance(cfg, nn.Module):
        return cfg
    params = accepted_args(cls)
    if 'in_channels' not in params:
        return cfg
    where = _where(owner, part, cfg)
    count = len(shapes.channels)
    every = list(shapes.channels)
    if 'in_index' in params or last:
        index = _setting(cfg, 'in_index', params) if 'in_index' in params else None
        index = -1 if index is None else index
        indices = _indices(index, count, where, shapes)
        derived = ([every[i] for i in indices] if isinstance(index, Sequence)
                   else every[indices[0]])
        at = f' at in_index={_plain(index)!r}' if 'in_index' in params else ' (last output)'
    else:
        derived, at = every, ''
    given = _given(cfg, 'in_channels')
    if given is None:
        cfg = _copy(cfg)
        cfg['in_channels'] = derived
        return cfg
    ok = _plain(given) == _plain(derived)
    if not ok and isinstance(derived, int) and isinstance(given, Sequence):
        ok = 'in_index' in params and [int(c) for c in given] == every
    if not ok:
        raise _disagree(where, 'in_channels', given, derived, shapes, at)
    return cfg


def _multiple_of(where, field, given, divisor, shapes):
    if int(given) % divisor:
        raise ValueError(f'{where}: {field}={_plain(given)!r} in the config, but the '
                         f'backbone needs input sides that are multiples of {divisor} '
                         f'(size_divisibility={divisor}: its total downsampling); backbone: '
                         f'{shapes.describe()}. Leave {field} out of the config to derive it')


def derive_det_preprocessor(cfg, shapes, owner):
    """An mmdet data preprocessor config with ``pad_size_divisor`` = the backbone's
    ``size_divisibility`` (a given one must be a multiple of it)."""
    cls = _class_of(cfg)
    if cfg is None or cls is None or isinstance(cfg, nn.Module):
        return cfg
    if 'pad_size_divisor' not in accepted_args(cls):
        return cfg
    where = _where(owner, 'data_preprocessor', cfg)
    divisor = shapes.size_divisibility
    given = _given(cfg, 'pad_size_divisor')
    if given is not None:
        if divisor is not None:
            _multiple_of(where, 'pad_size_divisor', given, divisor, shapes)
        return cfg
    if divisor is None:
        raise ValueError(f'{where}: pad_size_divisor cannot be derived: the backbone reports '
                         f'no size_divisibility ({shapes.describe()}); give it in the config')
    cfg = _copy(cfg)
    cfg['pad_size_divisor'] = int(divisor)
    return cfg


def derive_seg_preprocessor(cfg, shapes, owner):
    """An mmseg data preprocessor config padded to the backbone's ``size_divisibility``.

    Training: ``size_divisor`` is filled when no fixed ``size`` is given (mmseg takes one
    of the two); a given ``size`` or ``size_divisor`` must be a multiple. Testing:
    ``test_cfg.size_divisor`` is filled when ``test_cfg`` names neither, else checked.
    """
    cls = _class_of(cfg)
    divisor = shapes.size_divisibility
    if cfg is None or cls is None or isinstance(cfg, nn.Module) or divisor is None:
        return cfg
    params = accepted_args(cls)
    if 'size_divisor' not in params:
        return cfg
    where = _where(owner, 'data_preprocessor', cfg)
    cfg = _copy(cfg)
    size, given = _given(cfg, 'size'), _given(cfg, 'size_divisor')
    if given is not None:
        _multiple_of(where, 'size_divisor', given, divisor, shapes)
    elif size is None:
        cfg['size_divisor'] = int(divisor)
    if size is not None:
        for side in size:
            _multiple_of(where, 'size', side, divisor, shapes)
    if 'test_cfg' in params:
        test = dict(_given(cfg, 'test_cfg') or {})
        if test.get('size_divisor') is not None:
            _multiple_of(where, 'test_cfg.size_divisor', test['size_divisor'], divisor, shapes)
        elif test.get('size') is not None:
            for side in test['size']:
                _multiple_of(where, 'test_cfg.size', side, divisor, shapes)
        else:
            test['size_divisor'] = int(divisor)
            cfg['test_cfg'] = test
    return cfg


# ---------------------------------------------------------------------- whole models
def derive_classifier(shapes, neck=None, head=None):
    """``(neck, head)`` of a classifier (``DiffSSLClassifier``) filled from ``shapes``."""
    neck = derive_in_channels(neck, shapes, 'DiffSSLClassifier', last=True)
    return neck, derive_cls_head(head, shapes, 'DiffSSLClassifier', neck=neck)


def derive_detector(shapes, neck=None, data_preprocessor=None, owner='DiffMaskRCNN'):
    """``(neck, data_preprocessor)`` of an mmdet detector filled from ``shapes``."""
    return (derive_in_channels(neck, shapes, owner),
            derive_det_preprocessor(data_preprocessor, shapes, owner))


def derive_segmentor(shapes, decode_head, neck=None, auxiliary_head=None,
                     data_preprocessor=None, owner='DiffEncoderDecoder'):
    """``(decode_head, neck, auxiliary_head, data_preprocessor)`` of an mmseg segmentor
    filled from ``shapes``; with a neck, the neck's ``in_channels`` instead of the heads'."""
    if neck is not None:
        neck = derive_in_channels(neck, shapes, owner)
    else:
        decode_head = derive_in_channels(decode_head, shapes, owner, 'decode_head')
        if isinstance(auxiliary_head, list):
            auxiliary_head = [derive_in_channels(h, shapes, owner, f'auxiliary_head[{i}]')
                              for i, h in enumerate(auxiliary_head)]
        else:
            auxiliary_head = derive_in_channels(auxiliary_head, shapes, owner,
                                                'auxiliary_head')
    return (decode_head, neck, auxiliary_head,
            derive_seg_preprocessor(data_preprocessor, shapes, owner))


#: model type -> (derivation, the config keys it takes and returns)
DERIVING_MODELS = {
    'DiffSSLClassifier': (derive_classifier, ('neck', 'head')),
    'DiffMaskRCNN': (derive_detector, ('neck', 'data_preprocessor')),
    'DiffEncoderDecoder': (derive_segmentor,
                           ('decode_head', 'neck', 'auxiliary_head', 'data_preprocessor')),
}


def derived_model_config(model):
    """The model config as the deriving model classes complete it, and what they filled.

    For ``tools/print_blocks.py`` and tests: nothing but the backbone is built (on the meta
    device).

    Args:
        model (dict): a model config whose type is one of :data:`DERIVING_MODELS`.

    Returns:
        tuple[dict, list[tuple[str, object]]]: the completed config (a copy) and the
        ``(dotted key, value)`` pairs that were left out and filled in.
    """
    kind = model.get('type')
    if kind not in DERIVING_MODELS:
        raise ValueError(f'model type {kind!r} derives no shapes; the deriving models are '
                         f'{sorted(DERIVING_MODELS)}')
    derive, keys = DERIVING_MODELS[kind]
    model = _copy(model)
    shapes = backbone_shapes(model['backbone'])
    if shapes is None:
        return model, []
    before = {k: model.get(k) for k in keys}
    after = dict(zip(keys, derive(shapes, **before)))
    for key, value in after.items():   # item by item: ConfigDict.update merges in place
        if value is not None:
            model[key] = value
    return model, sorted(_filled(before, after))


def _filled(before, after, prefix=''):
    """Dotted keys whose value ``after`` has and ``before`` left out."""
    out = []
    for key, value in after.items():
        old = before.get(key) if isinstance(before, Mapping) else None
        name = f'{prefix}{key}'
        if isinstance(value, list) and isinstance(old, list):   # auxiliary_head lists
            for i, (o, v) in enumerate(zip(old, value)):
                if isinstance(v, Mapping):
                    out += _filled(o if isinstance(o, Mapping) else {}, v, f'{name}[{i}].')
        elif isinstance(value, Mapping):
            out += _filled(old if isinstance(old, Mapping) else {}, value, f'{name}.')
        elif old is None and value is not None:
            out.append((name, _plain(value)))
    return out
