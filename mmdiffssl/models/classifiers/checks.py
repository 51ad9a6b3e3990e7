"""Build-time agreement checks between a diffusion backbone and the head reading it."""
import inspect
from collections.abc import Mapping

from mmengine.registry import MODELS


def _backbone_layout(backbone):
    """(blocks, timesteps, fuse, out_channels) of a built backbone or a backbone config.

    Returns None where it cannot be known without building (``blocks='pyramid'``, an unknown
    backbone type); ``out_channels`` is None for configs.
    """
    if isinstance(backbone, Mapping):
        cfg = dict(backbone)
        if cfg.get('type') == 'DifFeedBackbone':
            inner = cfg.get('backbone')
            return _backbone_layout(inner) if isinstance(inner, Mapping) else None
        cls = MODELS.get(cfg.get('type', '')) if isinstance(cfg.get('type'), str) else None
        if cls is None or not hasattr(cls, 'intermediates'):
            return None
        defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
        blocks = cfg.get('blocks', defaults.get('blocks'))
        if isinstance(blocks, str):
            return None
        return (tuple(blocks), tuple(cfg.get('timesteps', defaults.get('timesteps'))),
                cfg.get('fuse_timesteps', defaults.get('fuse_timesteps')), None)
    if not all(hasattr(backbone, a) for a in ('blocks', 'timesteps', 'fuse_timesteps')):
        return None
    return (tuple(backbone.blocks), tuple(backbone.timesteps), backbone.fuse_timesteps,
            tuple(backbone.out_channels))


def _head_attr(head, name):
    if isinstance(head, Mapping):
        value = head.get(name)
        if value is None and name in ('blocks', 'timesteps', 'num_timesteps'):
            # DifFormerHead's defaults are the paper's; count them as declared.
            cls = MODELS.get(head.get('type', '')) if isinstance(head.get('type'), str) else None
            if cls is not None:
                param = inspect.signature(cls).parameters.get(name)
                if param is not None and param.default is not inspect.Parameter.empty:
                    value = param.default
        return value
    return getattr(head, name, None)


def check_matches_backbone(head, backbone, check_channels=True):
    """Raise ``ValueError`` when a head's declared layout disagrees with its backbone.

    Checked, where both sides declare it: ``blocks`` (same blocks in the same order: the
    head's per-block layers follow the backbone's output order), ``timesteps`` (same order,
    'concat' fusion when there are several), ``num_timesteps`` (timesteps fused into each
    output: ``len(timesteps)`` under 'concat', 1 under 'mean') and, for built modules with
    ``check_channels``, ``in_channels`` against the backbone's ``out_channels`` at the head's
    ``feat_index``.

    Args:
        head (nn.Module | dict): a built head or its config.
        backbone (nn.Module | dict): a built backbone (ADMBackbone, DifFeedBackbone) or its
            config.
        check_channels (bool): also compare channels (False when a neck sits between).
    """
    layout = _backbone_layout(backbone)
    if layout is None:
        return
    blocks, timesteps, fuse, out_channels = layout
    name = head.get('type') if isinstance(head, Mapping) else type(head).__name__
    head_blocks = _head_attr(head, 'blocks')
    if head_blocks is not None and tuple(head_blocks) != blocks:
        hint = (' (same blocks in another order: the head would read each output with '
                'another block\'s layers)' if sorted(head_blocks) == sorted(blocks) else '')
        raise ValueError(f'{name} was configured for blocks {tuple(head_blocks)} but the '
                         f'backbone returns blocks {blocks}{hint}; give both the same tuple '
                         '(configs: one variable for both)')
    head_timesteps = _head_attr(head, 'timesteps')
    if head_timesteps is not None:
        if tuple(head_timesteps) != timesteps:
            raise ValueError(f'{name} was configured for timesteps {tuple(head_timesteps)} '
                             f'but the backbone uses timesteps {timesteps}; give both the '
                             'same tuple, in the same order')
        if len(timesteps) > 1 and fuse != 'concat':
            raise ValueError(f"{name} reads every timestep separately: the backbone needs "
                             f"fuse_timesteps='concat', not '{fuse}'")
    num_timesteps = _head_attr(head, 'num_timesteps')
    if num_timesteps is not None:
        fused = len(timesteps) if fuse == 'concat' else 1
        if int(num_timesteps) != fused:
            raise ValueError(f'{name} has num_timesteps={num_timesteps} but each backbone '
                             f'output holds {fused} timestep(s) ({len(timesteps)} timesteps, '
                             f"fuse_timesteps='{fuse}')")
    in_channels = _head_attr(head, 'in_channels')
    feat_index = _head_attr(head, 'feat_index')
    if (check_channels and out_channels is not None and in_channels is not None
            and feat_index is not None):
        feat_index = (feat_index, ) if isinstance(feat_index, int) else tuple(feat_index)
        in_channels = ((in_channels, ) * len(feat_index) if isinstance(in_channels, int)
                       else tuple(in_channels))
        for i, channels in zip(feat_index, in_channels):
            if not -len(out_channels) <= i < len(out_channels):
                raise ValueError(f'{name} reads backbone output {i} but the backbone has '
                                 f'{len(out_channels)} outputs (blocks {blocks})')
            if channels != out_channels[i]:
                raise ValueError(f'{name} expects {channels} channels from backbone output '
                                 f'{i} (block {blocks[i]}) but the backbone gives '
                                 f'{out_channels[i]}: set in_channels to the backbone\'s '
                                 f'out_channels {list(out_channels)}')
