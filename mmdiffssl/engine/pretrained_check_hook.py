"""PretrainedInitCheckHook: every tensor of a ``Pretrained``-initialised module came from its file.

mmengine's ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` loads with
``strict=False`` and only logs missing and mis-shaped keys, so a stage-two RepFusion student
of the wrong stem (or depth, or width) starts partly from random weights and trains on
without a word. :func:`check_pretrained_init` compares, after initialisation, every tensor of
each such module's state dict with the file's and raises naming the ones that do not match.
(A different init type is no way out: mmpretrain's ResNet re-zeroes its residual BatchNorms
unless ``init_cfg.type == 'Pretrained'``, so the check runs after the whole
``init_weights``.)
"""
import os.path as osp
import re

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper


def pretrained_inits(model):
    """``(name, module, init_cfg)`` of every module of ``model`` with a ``Pretrained``
    init_cfg (a dict, or one entry of a list)."""
    for name, module in model.named_modules():
        cfgs = getattr(module, 'init_cfg', None)
        for cfg in cfgs if isinstance(cfgs, (list, tuple)) else [cfgs]:
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
                yield name, module, cfg


def _file_state_dict(cfg):
    """The tensors ``PretrainedInit`` read for this init_cfg, with its prefix handling."""
    from mmengine.runner.checkpoint import _load_checkpoint
    checkpoint, prefix = cfg['checkpoint'], cfg.get('prefix')
    if osp.isfile(checkpoint):
        from mmdiffssl.utils.checkpoint import read_checkpoint_file
        obj = read_checkpoint_file(checkpoint)   # by content, safe loading
    else:   # URLs, open-mmlab://, ...: mmengine's own reader (as PretrainedInit)
        obj = _load_checkpoint(checkpoint, map_location='cpu')
    state = obj.get('state_dict', obj) if isinstance(obj, dict) else obj
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    # without a prefix, mmengine's load_checkpoint strips a leading 'module.'
    return {re.sub(r'^module\.', '', k): v for k, v in state.items()}


def _listing(items, limit=12):
    more = f' ... and {len(items) - limit} more' if len(items) > limit else ''
    return ', '.join(items[:limit]) + more


def check_pretrained_init(model):
    """Raise unless every tensor of each ``Pretrained``-initialised module equals its file's.

    Call after ``model.init_weights()``. For each module of ``model`` whose ``init_cfg`` is
    ``type='Pretrained'`` (see :func:`pretrained_inits`), every entry of its state dict must
    be in the checkpoint (under ``prefix``), with the same shape and the same values.

    Returns:
        int: the number of modules checked.

    Raises:
        ValueError: names the module, the file and prefix, and the tensors that did not come
            from the file (missing there, of another shape, or of other values), with the
            file's keys that no tensor took.
    """
    problems, checked = [], 0
    for name, module, cfg in pretrained_inits(model):
        checked += 1
        source = _file_state_dict(cfg)
        own = module.state_dict()
        missing = [k for k in own if k not in source]
        shapes = [f'{k} (model {tuple(v.shape)}, file {tuple(source[k].shape)})'
                  for k, v in own.items()
                  if k in source and tuple(source[k].shape) != tuple(v.shape)]
        values = [k for k, v in own.items()
                  if k in source and tuple(source[k].shape) == tuple(v.shape)
                  and not torch.equal(v.detach().cpu(), source[k].to(v.dtype).cpu())]
        if missing or shapes or values:
            unused = sorted(set(source) - set(own))
            where = f"'{name}'" if name else 'the model'
            prefix = f", prefix '{cfg['prefix']}'" if cfg.get('prefix') else ''
            bad = len(missing) + len(shapes) + len(values)
            lines = [f"{where} ({type(module).__name__}) was initialised from "
                     f"'{cfg['checkpoint']}'{prefix}, but {bad} of its {len(own)} tensors "
                     'did not come from the file:']
            if missing:
                lines.append(f'  not in the file ({len(missing)}): {_listing(missing)}')
            if shapes:
                lines.append(f'  another shape ({len(shapes)}): {_listing(shapes)}')
            if values:
                lines.append(f'  other values after init ({len(values)}): {_listing(values)}')
            if unused:
                lines.append(f'  file keys no tensor took ({len(unused)}): {_listing(unused)}')
            problems.append('\n'.join(lines))
    if problems:
        raise ValueError('\n'.join(problems) + '\n(is the model the one the checkpoint was '
                         'trained with: same type, depth, stem and widths?)')
    return checked


class PretrainedInitCheckHook(Hook):
    """Runs :func:`check_pretrained_init` before the first training iteration.

    The Runner initialises the weights after ``before_run`` and then loads ``load_from`` /
    resumes; this hook checks at ``before_train``, unless a checkpoint was loaded (then the
    weights are that checkpoint's, not the init file's, and the check is skipped with a log
    line). Add it with ``custom_hooks = [dict(type='PretrainedInitCheckHook')]``.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner):
        if getattr(runner, '_has_loaded', False):
            print_log('PretrainedInitCheckHook: weights loaded from a checkpoint '
                      '(load_from / resume); init_cfg files not checked', 'current')
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        checked = check_pretrained_init(model)
        print_log(f'PretrainedInitCheckHook: every tensor of {checked} Pretrained-initialised '
                  'module(s) matches its file', 'current')
