"""Offline loading of diffusers models (Stable Diffusion, DDPM) and their noise schedules.

``diffusers`` (and ``transformers`` for the CLIP text encoder) are optional: ``pip install
.[sd]`` (requirements/sd.txt). They are imported by the functions here, never at import
time, and only this module and the diffusers backbones use them.

Two layouts are accepted for ``pretrained`` (nothing is ever downloaded):

1. **a local diffusers folder**: a pipeline folder as written by ``save_pretrained`` or a
   Hub snapshot, with one subfolder per component (``unet/``, ``vae/``, ``scheduler/``,
   ``text_encoder/``, ``tokenizer/``), each with its ``config.json`` (the scheduler's:
   ``scheduler_config.json``) and weights; a single-model folder (``config.json`` and
   ``diffusion_pytorch_model.safetensors`` at its root, as for a lone ``UNet2DModel``) is
   accepted where the component allows it.
2. **a single weights file** (``.safetensors``, ``.ckpt``, ``.pt``, ``.pth``, ``.bin``) plus
   ``config=``, a local folder laid out as in 1 that provides the component configs (weights
   there are not needed and not read for the components the file holds). The file holds
   either the original (CompVis/Stability "LDM") layout of a whole Stable Diffusion
   checkpoint (``model.diffusion_model.*``, ``first_stage_model.*``,
   ``cond_stage_model.*``), converted with diffusers' own single-file converters, or a
   diffusers-layout state dict of the component (bare keys, or under ``unet.``/``vae.``).

Loading runs with ``HF_HUB_OFFLINE=1`` and ``local_files_only=True``, and only on paths that
were checked to exist: a missing path raises ``FileNotFoundError`` naming it and the two
layouts.
"""
import contextlib
import json
import os
import os.path as osp

import torch

from mmdiffssl.models.diffusion import DiffusionSchedule, beta_schedule
from mmdiffssl.utils.checkpoint import (CheckpointReadError, check_state_dict_fits,
                                        load_state_dict_file)

WEIGHT_SUFFIXES = ('.safetensors', '.ckpt', '.pt', '.pth', '.bin')
INSTALL_HINT = "install the optional 'sd' extra: pip install -e '.[sd]' (requirements/sd.txt)"
#: Offline switches of huggingface_hub, diffusers and transformers.
OFFLINE_ENV = {'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1',
               'HF_HUB_DISABLE_TELEMETRY': '1', 'DISABLE_TELEMETRY': '1'}
#: Schedules of the published models, used when a folder has no scheduler config.
SD_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule='scaled_linear', beta_start=0.00085,
                    beta_end=0.012)
DDPM_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule='linear', beta_start=0.0001,
                      beta_end=0.02)


@contextlib.contextmanager
def hub_offline():
    """Set the hub's offline switches for the duration of a load (restored afterwards).

    huggingface_hub reads them when it is first imported, so imports of diffusers and
    transformers made inside this context leave the process's hub offline for good.
    """
    saved = {k: os.environ.get(k) for k in OFFLINE_ENV}
    os.environ.update(OFFLINE_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def import_diffusers():
    """The ``diffusers`` module, imported offline; ImportError with the install hint."""
    with hub_offline():
        try:
            import diffusers
        except ImportError as err:
            raise ImportError(f'the diffusers backbones need diffusers: {INSTALL_HINT}') from err
    return diffusers


def import_transformers():
    """The ``transformers`` module (CLIP text encoder), imported offline."""
    with hub_offline():
        try:
            import transformers
        except ImportError as err:
            raise ImportError('the CLIP text encoder needs transformers: '
                              f'{INSTALL_HINT}') from err
    return transformers


def layouts_hint(components):
    """The two accepted layouts, for error messages; ``components``: 'unet' or a tuple."""
    if isinstance(components, str):
        components = (components, )
    configs = ' and '.join(f'{c}/config.json' for c in components)
    return (f'expected either a local diffusers folder holding {configs} and the weights '
            f"(save_pretrained or a Hub snapshot), or a single weights file "
            f"({', '.join(WEIGHT_SUFFIXES)}) together with config=<a local diffusers folder "
            f'holding {configs}>; nothing is downloaded')


def is_weights_file(path):
    return isinstance(path, str) and path.endswith(WEIGHT_SUFFIXES)


def check_pretrained(pretrained, config, component):
    """Validate ``pretrained``/``config`` (see the module docstring) before any loading.

    ``component`` ('unet', or a tuple such as ('unet', 'vae')) names what the messages ask
    for.

    Returns:
        str: 'folder' or 'file'.
    """
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f'pretrained must be a path, got {type(pretrained).__name__}')
    pretrained = os.fspath(pretrained)
    if osp.isdir(pretrained):
        if config is not None:
            raise ValueError(f"config='{config}' is only used with a single weights file; "
                             f"pretrained='{pretrained}' is a folder")
        return 'folder'
    if osp.isfile(pretrained):
        if not is_weights_file(pretrained):
            raise ValueError(f"pretrained='{pretrained}' is a file but not a weights file "
                             f"({', '.join(WEIGHT_SUFFIXES)})")
        if config is None:
            raise ValueError(f"pretrained='{pretrained}' is a single weights file: set config= "
                             'to a local diffusers folder with the component configs; '
                             + layouts_hint(component))
        if not osp.isdir(config):
            raise FileNotFoundError(f"config folder not found: '{config}'; "
                                    + layouts_hint(component))
        return 'file'
    raise FileNotFoundError(f"pretrained='{pretrained}' does not exist; "
                            + layouts_hint(component))


def component_dir(root, component, allow_root=False, required=True):
    """``root/component`` if it has a ``config.json`` (or ``root`` itself with
    ``allow_root``); None or FileNotFoundError when neither has one."""
    candidates = [osp.join(root, component)] + ([root] if allow_root else [])
    for folder in candidates:
        if osp.isfile(osp.join(folder, 'config.json')):
            return folder
    if not required:
        return None
    raise FileNotFoundError(f"no {component}/config.json under '{root}'"
                            + (" (nor config.json at its root)" if allow_root else '')
                            + '; ' + layouts_hint(component))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def load_single_file(path):
    """State dict of a single weights file, read safely (no arbitrary unpickling).

    The loader follows the file's content (see :func:`load_state_dict_file`); an unreadable
    file raises its :class:`CheckpointReadError`, which names the file and the format tried
    (e.g. a Lightning ``.ckpt`` with pickled objects: convert it to ``.safetensors``).
    """
    try:
        return load_state_dict_file(path)
    except (FileNotFoundError, CheckpointReadError):
        raise
    except (KeyError, TypeError) as err:   # read, but not a state dict
        raise ValueError(f"'{path}' was read but holds no state dict ({err}); store the "
                         'weights as a flat state dict (e.g. .safetensors)') from err


def load_model(cls_name, pretrained, component, config=None, checkpoint=None, allow_root=False):
    """Load a diffusers model class offline (see the module docstring).

    Args:
        cls_name (str): 'UNet2DConditionModel', 'AutoencoderKL' or 'UNet2DModel'.
        pretrained (str): a local diffusers folder or a single weights file.
        component (str): the subfolder, e.g. 'unet' or 'vae'.
        config (str, optional): with a single file, the folder holding the configs.
        checkpoint (dict, optional): the single file's state dict, when already read.
        allow_root (bool): accept a single-model folder (``config.json`` at its root).

    Returns:
        the model in eval mode, fp32, on the CPU.
    """
    diffusers = import_diffusers()
    cls = getattr(diffusers, cls_name)
    layout = check_pretrained(pretrained, config, component)
    with hub_offline():
        if layout == 'folder':
            folder = component_dir(pretrained, component, allow_root)
            names = os.listdir(folder)
            if not any(n.startswith('diffusion_pytorch_model') for n in names):
                raise FileNotFoundError(f"'{folder}' has a config.json but no "
                                        'diffusion_pytorch_model.* weights; '
                                        + layouts_hint(component))
            # low_cpu_mem_usage needs accelerate (not a dependency)
            model = cls.from_pretrained(folder, local_files_only=True, low_cpu_mem_usage=False)
        else:
            folder = component_dir(config, component, allow_root)
            model = cls.from_config(cls.load_config(folder, local_files_only=True))
            if checkpoint is None:
                checkpoint = load_single_file(pretrained)
            state = component_state_dict(model, cls_name, component, checkpoint, pretrained)
            check_state_dict_fits(model, state, source=f"'{pretrained}' ({component})")
            model.load_state_dict(state, strict=True)
    return model.float().eval()


def component_state_dict(model, cls_name, component, checkpoint, source):
    """The component's diffusers-layout weights out of a single file's state dict."""
    own = set(model.state_dict())
    for prefix in ('', component + '.'):
        state = {k[len(prefix):]: v for k, v in checkpoint.items() if k.startswith(prefix)}
        if own <= set(state):
            return {k: state[k] for k in own}
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES
    mapping = SINGLE_FILE_LOADABLE_CLASSES.get(cls_name, {}).get('checkpoint_mapping_fn')
    if mapping is None:
        raise ValueError(f"'{source}' does not hold the {cls_name} weights in diffusers "
                         f'layout (keys of the model, bare or under "{component}."), and '
                         f'diffusers has no original-layout converter for {cls_name}')
    converted = mapping(checkpoint=checkpoint, config=model.config)
    if not converted:
        raise ValueError(f"'{source}' holds no {component} weights: neither diffusers-layout "
                         'keys nor original (LDM) ones such as model.diffusion_model.* or '
                         'first_stage_model.*')
    return converted


def load_text_encoder(pretrained, config=None, checkpoint=None):
    """CLIP tokenizer and text encoder of a Stable Diffusion folder (or single file).

    With a single file the tokenizer and the text encoder's config come from
    ``config/tokenizer`` and ``config/text_encoder``; the weights from the file's
    ``text_encoder.*`` (diffusers layout) or ``cond_stage_model.*`` entries (SD 1.x CLIP or
    SD 2.x OpenCLIP layout), or from ``config/text_encoder`` when the file has none.

    Returns:
        (tokenizer, CLIPTextModel in eval mode)
    """
    transformers = import_transformers()
    layout = check_pretrained(pretrained, config, 'text_encoder')
    root = pretrained if layout == 'folder' else config
    with hub_offline():
        tok_dir = osp.join(root, 'tokenizer')
        if not osp.isdir(tok_dir):
            raise FileNotFoundError(f"no tokenizer/ folder under '{root}': the null or prompt "
                                    'text conditioning needs the CLIP tokenizer and text '
                                    "encoder (or give precomputed embeddings: text=dict("
                                    "type='file', path=...))")
        tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        enc_dir = component_dir(root, 'text_encoder')
        file_state = None
        if layout == 'file':
            if checkpoint is None:
                checkpoint = load_single_file(pretrained)
            file_state = _clip_state_from_ldm(checkpoint, enc_dir, transformers)
        if file_state is None:
            if not any(n.startswith(('model', 'pytorch_model')) for n in os.listdir(enc_dir)):
                raise FileNotFoundError(
                    f"no text encoder weights: '{pretrained}' has no text_encoder.* or "
                    f"cond_stage_model.* entries and '{enc_dir}' no model weights")
            model = transformers.CLIPTextModel.from_pretrained(enc_dir, local_files_only=True)
        else:
            model = transformers.CLIPTextModel(
                transformers.CLIPTextConfig.from_pretrained(enc_dir, local_files_only=True))
            missing, unexpected = model.load_state_dict(file_state, strict=False)
            bad = [k for k in list(missing) + list(unexpected) if 'position_ids' not in k]
            if bad:
                raise ValueError(f"the text encoder weights in '{pretrained}' do not fit "
                                 f'{enc_dir}/config.json: {bad[:10]}')
    return tokenizer, model.float().eval()


def _clip_state_from_ldm(checkpoint, enc_dir, transformers):
    from diffusers.loaders import single_file_utils as sfu
    ours = {k[len('text_encoder.'):]: v for k, v in checkpoint.items()
            if k.startswith('text_encoder.')}
    if ours:
        return ours
    if any(k.startswith(tuple(sfu.LDM_CLIP_PREFIX_TO_REMOVE)) for k in checkpoint):
        return sfu.convert_ldm_clip_checkpoint(checkpoint)
    if any(k.startswith('cond_stage_model.model.') for k in checkpoint):
        with torch.device('meta'):
            model = transformers.CLIPTextModel(
                transformers.CLIPTextConfig.from_pretrained(enc_dir, local_files_only=True))
        return sfu.convert_open_clip_checkpoint(model, checkpoint)
    return None


def encode_prompt(tokenizer, text_encoder, prompt):
    """Stable Diffusion's prompt embedding: ``(1, L, D)`` last hidden state of the CLIP text
    encoder on the prompt padded to the tokenizer's ``model_max_length`` (L = 77)."""
    tokens = tokenizer(prompt, padding='max_length', max_length=tokenizer.model_max_length,
                       truncation=True, return_tensors='pt')
    mask = tokens.attention_mask if getattr(text_encoder.config, 'use_attention_mask',
                                            False) else None
    with torch.no_grad():
        return text_encoder(tokens.input_ids, attention_mask=mask)[0].float()


# ---------------------------------------------------------------------- schedules
class BetaSchedule(DiffusionSchedule):
    """A :class:`DiffusionSchedule` from explicit betas (diffusers' scheduler configs)."""

    def __init__(self, name, betas):
        self.name = name
        self.betas = torch.as_tensor(betas, dtype=torch.float64)
        self.num_steps = len(self.betas)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()


def schedule_from_config(config):
    """The training noise schedule of a diffusers scheduler config.

    Args:
        config (dict): ``num_train_timesteps``, ``beta_schedule`` ('linear',
            'scaled_linear' or 'squaredcos_cap_v2'), ``beta_start``, ``beta_end``, or
            ``trained_betas``.
    """
    steps = int(config.get('num_train_timesteps', 1000))
    name = config.get('beta_schedule', 'linear')
    if config.get('trained_betas') is not None:
        return BetaSchedule('trained_betas', config['trained_betas'])
    start, end = float(config.get('beta_start', 0.0001)), float(config.get('beta_end', 0.02))
    if name == 'linear':
        betas = torch.linspace(start, end, steps, dtype=torch.float64)
    elif name == 'scaled_linear':
        betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64)**2
    elif name == 'squaredcos_cap_v2':
        betas = beta_schedule('cosine', steps)
    else:
        raise ValueError(f"beta_schedule '{name}' is not one of 'linear', 'scaled_linear', "
                         "'squaredcos_cap_v2'")
    return BetaSchedule(name, betas)


def scheduler_config(pretrained, config=None, override=None, default=None):
    """The scheduler config of a folder (``scheduler/scheduler_config.json``, or
    ``scheduler_config.json`` at its root), updated with ``override``; ``default`` when the
    folder has none (or when loading from configs only)."""
    found = None
    root = config if pretrained is not None and not osp.isdir(pretrained) else pretrained
    if root is not None:
        for path in (osp.join(root, 'scheduler', 'scheduler_config.json'),
                     osp.join(root, 'scheduler_config.json')):
            if osp.isfile(path):
                found = read_json(path)
                break
    cfg = dict(found if found is not None else (default or {}))
    cfg.update(override or {})
    return cfg
