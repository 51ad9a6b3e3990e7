"""What the command-line tools share: runner arguments, config loading, --amp, --resume,
--show-dir, and reading an arch from a command-line string.

Imported by the scripts in ``tools/`` (their folder is first on ``sys.path``); the scripts
in ``tools/analysis/`` put ``tools/`` on the path first.
"""
import json
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmdiffssl.engine.feature_cache_runner import CACHE_KEYS  # read only by that runner
from mmdiffssl.utils.compat import allow_mmengine_checkpoints
from mmdiffssl.utils.dist import prepare_cpu_distributed


def add_runner_arguments(parser):
    """The options ``tools/train.py`` and ``tools/test.py`` share, as in the upstream tools."""
    parser.add_argument('--work-dir', help='the dir to save logs, models and metrics')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (xxx=yyy format)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def load_config(config, cfg_options=None, work_dir=None, launcher='none'):
    """Read a config file and apply the command-line overrides every tool shares.

    Args:
        config (str): path of an mmengine config file.
        cfg_options (dict, optional): ``--cfg-options`` key/value overrides.
        work_dir (str, optional): output folder; defaults to ``work_dirs/<config name>``.
        launcher (str): job launcher, ``'none'`` for a single process.

    Returns:
        mmengine.Config
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(config))[0])
    prepare_cpu_distributed(cfg, launcher)
    check_cache_runner(cfg)
    allow_mmengine_checkpoints()   # the tools resume and initialise from run checkpoints
    return cfg


def check_cache_runner(cfg):
    """Refuse a config whose caches would be ignored.

    ``feature_cache`` / ``teacher_cache`` are read by ``FeatureCacheRunner`` only; under
    mmengine's plain Runner the model would silently train online.
    """
    keys = [key for key in CACHE_KEYS if cfg.get(key)]
    if keys and cfg.get('runner_type') != 'FeatureCacheRunner':
        raise ValueError(f"{', '.join(keys)} is set but runner_type={cfg.get('runner_type')!r}: "
                         "the caches take effect only with runner_type='FeatureCacheRunner' "
                         '(mmdiffssl.engine.FeatureCacheRunner); add it to the config')


def enable_amp(cfg):
    """Switch the config's optimizer wrapper to mixed precision (``--amp``)."""
    if not torch.cuda.is_available():
        raise RuntimeError('--amp needs a CUDA GPU (mmengine AmpOptimWrapper asserts one); '
                           'run without --amp on CPU')
    if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def enable_visualization(cfg, show_dir):
    """``--show-dir``: the codebase's visualisation hook draws every test prediction as PNG.

    mmdet's DetVisualizationHook writes to ``test_out_dir`` (under the work dir, so an
    absolute ``show_dir`` is used as is); mmseg's SegVisualizationHook writes through the
    visualizer's backends into ``<work_dir>/<timestamp>/vis_data/vis_image``.
    """
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ValueError('--show-dir needs default_hooks.visualization in the config')
    hook.draw = True
    if hook.type.endswith('DetVisualizationHook'):
        hook.test_out_dir = show_dir
    else:
        hook.interval = 1
        cfg.visualizer.save_dir = show_dir


def set_resume(cfg, resume):
    """Apply ``--resume``: ``'auto'`` resumes the work dir's last checkpoint, a path resumes it."""
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume is not None:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume checkpoint not found: {resume}')
        cfg.resume = True
        cfg.load_from = resume


def build_runner(cfg):
    """Build the Runner named by ``cfg.runner_type`` (mmengine's Runner by default), as the
    upstream tools do."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def json_dict_argument(value, argument, allowed):
    """``value`` parsed as a JSON dict, or a ValueError naming ``argument``, the value given
    and ``allowed`` (what the argument accepts)."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(f'{argument} {value!r} is not valid JSON ({err.msg} at character '
                         f'{err.pos}): {allowed}') from None
    if not isinstance(parsed, dict):
        raise ValueError(f'{argument} {value!r} is JSON but not a dict: {allowed}')
    return parsed


def arch_from_argument(value, argument='--arch'):
    """An ``arch`` from a command-line string: a preset name, a JSON dict of flags, or a
    config file whose ``model.backbone.arch`` (or its only dict of flags) is the arch.

    Args:
        value (str): the command-line value.
        argument (str): the argument's name, for error messages.

    Raises:
        ValueError: bad JSON, an unknown preset or flag; the message names ``argument``, the
            value given and what is allowed.
        FileNotFoundError: a ``.py`` value that is not a file.
    """
    from mmdiffssl.models.unets import ADM_PRESETS, adm_flags_from
    allowed = (f'give a preset name ({", ".join(ADM_PRESETS)}), a JSON dict of '
               'guided-diffusion flags (e.g. \'{"preset": "adm-256-uncond", "num_channels": '
               '64}\' or \'{"image_size": 32, "num_channels": 32, "channel_mult": "1,2"}\') '
               'or a config file (.py)')
    if value.lstrip().startswith('{'):
        arch = json_dict_argument(value, argument, allowed)
    elif value.endswith('.py'):
        arch = _arch_from_config(value)
    elif value in ADM_PRESETS:
        return value
    else:
        raise ValueError(f'{argument} {value!r} is neither a preset, nor JSON (a dict starts '
                         f'with {{), nor a .py config: {allowed}')
    try:
        adm_flags_from(arch)
    except (ValueError, TypeError) as err:
        raise ValueError(f'{argument} {value!r}: {err}') from None
    return arch


def _arch_from_config(value):
    if not osp.isfile(value):
        raise FileNotFoundError(f'config file not found: {value}')
    cfg = Config.fromfile(value)
    backbone = cfg.get('model', {}).get('backbone', {})
    if 'arch' in backbone:
        return backbone['arch']
    dicts = [v for v in cfg.to_dict().values() if isinstance(v, dict)]
    if len(dicts) != 1:
        raise ValueError(f'{value} has no model.backbone.arch and not exactly one flags dict')
    return dicts[0]


#: Published Stable Diffusion archs printed by name.
SD_NAMES = ('sd-1.x', 'sd-2.x')


def backbone_config(arch):
    """A backbone config for a preset name, JSON flags, a config file, a diffusers folder,
    or ``sd-1.x`` / ``sd-2.x``.

    Args:
        arch (str): an ADM preset or JSON dict of guided-diffusion flags; a config file
            (its ``model.backbone``, or ``model.teacher`` for RepFusion); a local diffusers
            folder (a Stable Diffusion pipeline with ``unet/`` and ``vae/``, or a
            ``UNet2DModel`` folder); or a published SD arch name.

    Returns:
        dict: the config, with ``type``.
    """
    if arch in SD_NAMES:
        from mmdiffssl.models.unets.diffusers_blocks import SD_ARCHS
        return dict(type='SDBackbone', unet_config=SD_ARCHS[arch]['unet'],
                    vae_config=SD_ARCHS[arch]['vae'], text=dict(type='learned', num_tokens=77))
    if osp.isdir(arch):
        if osp.isfile(osp.join(arch, 'vae', 'config.json')):
            return dict(type='SDBackbone', pretrained=arch)
        return dict(type='DiffusersUNetBackbone', pretrained=arch)
    if arch.endswith('.py'):
        from mmengine.config import Config
        if not osp.isfile(arch):
            raise FileNotFoundError(f'config file not found: {arch}')
        model = Config.fromfile(arch).get('model', {})
        for key in ('backbone', 'teacher'):
            cfg = model.get(key)
            if isinstance(cfg, dict) and cfg.get('type') == 'DifFeedBackbone':
                cfg = cfg['backbone']
            if isinstance(cfg, dict) and 'type' in cfg:
                return dict(cfg)
        raise ValueError(f'{arch} has no model.backbone or model.teacher config')
    return dict(type='ADMBackbone', arch=arch_from_argument(arch))
