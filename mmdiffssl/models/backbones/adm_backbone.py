"""ADMBackbone: a guided-diffusion (ADM) U-Net as a multi-scale feature extractor."""
import warnings
from collections.abc import Mapping

import torch
import torch.utils.checkpoint as torch_checkpoint
from mmengine.registry import MODELS

from mmdiffssl.models.diffusion import DiffusionSchedule
from mmdiffssl.models.unets import adm_flags_from, build_adm_unet
from mmdiffssl.utils.checkpoint import load_weights
from mmdiffssl.utils.weight_init import redraw_parameters_

from .base import AUTOCAST_DTYPES, DiffusionBackbone, ShapeSpec  # noqa: F401 (re-exported)

PYRAMID_STRIDES = (4, 8, 16, 32)


def pyramid_blocks(specs, strides=PYRAMID_STRIDES):
    """The last decoder block at each stride: the pyramid FPN and UPerNet read.

    Args:
        specs (list[BlockSpec]): the U-Net's ``block_specs()``.
        strides (Sequence[int]): wanted strides, e.g. (4, 8, 16, 32).

    Returns:
        tuple[int]: 1-based block numbers, one per stride (for adm-256-uncond: 30, 27, 24, 21).
    """
    decoder = [s for s in specs if s.kind == 'output']
    chosen = []
    for stride in strides:
        at_stride = [s.index for s in decoder if s.stride == stride]
        if not at_stride:
            have = sorted({s.stride for s in decoder})
            raise ValueError(f'no decoder block at stride {stride}; this arch has strides {have}')
        chosen.append(at_stride[-1])
    return tuple(chosen)


def block_module_name(spec, specs):
    """Name of the U-Net submodule computing a block, e.g. ``'input_blocks.3'``.

    Args:
        spec (BlockSpec): the block.
        specs (list[BlockSpec]): all blocks of the U-Net (``block_specs()``).
    """
    if spec.kind == 'input':
        return f'input_blocks.{spec.index - 1}'
    if spec.kind == 'middle':
        return 'middle_block'
    num_input = sum(s.kind == 'input' for s in specs)
    return f'output_blocks.{spec.index - num_input - 2}'


@MODELS.register_module()
class ADMBackbone(DiffusionBackbone):
    """Features of a guided-diffusion U-Net at chosen blocks and timesteps.

    The image (RGB in [-1, 1]) is noised to each timestep t with q_sample on the arch's
    schedule, the U-Net runs up to the deepest requested block, and each requested block's
    output is returned. Several timesteps run as one batched forward.

    Args:
        arch (str | dict): a preset name (see ``ADM_PRESETS``), a dict of guided-diffusion
            flags, or ``dict(preset=name, **overrides)``.
        checkpoint (str, optional): U-Net weights (``.pt``/``.pth``/``.safetensors``), e.g.
            OpenAI's ``256x256_diffusion_uncond.pt``; loaded strictly.
        checkpoint_prefix (str, optional): key prefix to take from ``checkpoint``, e.g.
            ``'unet.'`` for a checkpoint of our pretraining model (``DDPMPretrainer``).
        checkpoint_key (str, optional): the checkpoint entry to read, e.g.
            ``'ema_state_dict'``. With mmengine's EMAHook, ``state_dict`` holds the EMA
            weights and ``ema_state_dict`` the raw ones (prefix ``'module.unet.'``).
        blocks (Sequence[int] | str): 1-based block numbers (``tools/print_blocks.py`` lists
            them), or ``'pyramid'`` for the last decoder block at each of ``pyramid_strides``.
        timesteps (Sequence[int]): diffusion timesteps in [0, diffusion_steps).
        noise (str): 'fresh', 'fixed', 'none' or 'ensemble' (see :mod:`mmdiffssl.models.noise`).
        noise_seed (int): seed of the noise.
        ensemble_size (int): draws averaged in 'ensemble' mode.
        fuse_timesteps (str): 'concat' (channels of every timestep, in the given order) or
            'mean'.
        pyramid_strides (Sequence[int]): strides used by ``blocks='pyramid'``.
        class_label (int, optional): label fed to class-conditional archs (where no labels
            reach the backbone, as in mmdet and mmseg); required for them.
        frozen (bool): the U-Net never trains: no parameter requires grad, it stays in eval
            mode through ``train()``, and the forward builds no graph unless an injection
            needs gradients.
        trainable_from (int, optional): with ``frozen=False``, freeze blocks before this one
            (and the timestep embedding); None trains the whole U-Net.
        with_cp (bool): gradient checkpointing of each block (``torch.utils.checkpoint``).
        dtype (str): 'fp32', 'bf16' or 'fp16' autocast for the U-Net (GroupNorm stays fp32).
        random_init (str): without a checkpoint, 'guided' keeps guided-diffusion's init (its
            zero-initialised layers make every residual branch dead), 'redraw' re-draws every
            parameter so the random U-Net is non-degenerate.
        compile (bool | dict): ``torch.compile`` the U-Net's feature function (the prefix up
            to the deepest requested block, autocast included). A dict is passed to
            ``torch.compile`` as keyword arguments (e.g. ``dict(mode='max-autotune')``).
            The U-Net's 4-D weights and its input are put in ``channels_last`` (compiled
            kernels are faster in it; eager GroupNorm is slower, so only with compile). One
            compiled function is cached per (blocks, dtype, device type) request; the first
            call of each compiles (tens of seconds for adm-256 on a GPU) and a new input
            shape may recompile once. Outputs are the same as eager up to floating-point
            rounding. Calls with ``with_cp`` under grad run eagerly.
        cuda_graphs (bool): with ``compile``, capture CUDA graphs (``torch.compile``'s
            'reduce-overhead' mode; a new input shape records new graphs); outputs are
            cloned out of the graphs' memory pool. On CPU inputs it warns once and runs the
            compiled function without graphs. Requires ``compile``.
        init_cfg (dict, optional): mmengine init config.

    Shapes:
        input ``(B, 3, H, W)`` with H and W multiples of the arch's total downsampling;
        output: a tuple with one ``(B, C_i, H / s_i, W / s_i)`` tensor per block, where
        ``C_i`` is the block's channels times ``len(timesteps)`` for 'concat'.
        ``output_shape()`` gives every ``(C_i, s_i)``.
    """

    def __init__(self,
                 arch='adm-256-uncond',
                 checkpoint=None,
                 checkpoint_prefix=None,
                 checkpoint_key=None,
                 blocks=(24,),
                 timesteps=(150,),
                 noise='fixed',
                 noise_seed=0,
                 ensemble_size=4,
                 fuse_timesteps='concat',
                 pyramid_strides=PYRAMID_STRIDES,
                 class_label=None,
                 frozen=True,
                 trainable_from=None,
                 with_cp=False,
                 dtype='fp32',
                 random_init='guided',
                 compile=False,
                 cuda_graphs=False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.flags = adm_flags_from(arch)
        self.unet = build_adm_unet(self.flags)
        self.schedule = DiffusionSchedule(self.flags['noise_schedule'],
                                          self.flags['diffusion_steps'])
        self._setup_noise(noise, noise_seed, ensemble_size)
        specs = self.unet.block_specs()

        if isinstance(blocks, str):
            if blocks != 'pyramid':
                raise ValueError(f"blocks='{blocks}' is not allowed: give block numbers "
                                 "or 'pyramid'")
            blocks = pyramid_blocks(specs, pyramid_strides)
        self.blocks = tuple(int(b) for b in blocks)
        if not self.blocks:
            raise ValueError('blocks is empty: request at least one block')
        for b in self.blocks:
            if not 1 <= b <= self.unet.num_blocks:
                raise ValueError(f'block {b} is outside this arch\'s blocks '
                                 f'1..{self.unet.num_blocks} (tools/print_blocks.py lists them)')
        self._set_timesteps(timesteps)
        self._set_fuse(fuse_timesteps)
        self._set_dtype(dtype)

        self.class_label = self._check_class_label(class_label)
        self.with_cp = with_cp
        self.frozen = frozen
        self.trainable_from = trainable_from

        if checkpoint is not None:
            load_weights(self.unet, checkpoint, prefix=checkpoint_prefix, key=checkpoint_key)
        elif random_init == 'redraw':
            redraw_parameters_(self.unet, torch.Generator().manual_seed(noise_seed))
        elif random_init != 'guided':
            raise ValueError(f"random_init='{random_init}' is not 'guided' or 'redraw'")
        self.checkpoint = checkpoint
        self._freeze()
        self._setup_compile(compile, cuda_graphs)

    # ------------------------------------------------------------------ construction helpers
    def _setup_compile(self, compile, cuda_graphs):
        if isinstance(compile, Mapping):
            self.compile_kwargs = dict(compile)
        elif isinstance(compile, bool):
            self.compile_kwargs = {} if compile else None
        else:
            raise TypeError(f'compile must be a bool or a dict of torch.compile arguments, '
                            f'got {type(compile).__name__}')
        if cuda_graphs and self.compile_kwargs is None:
            raise ValueError('cuda_graphs=True needs compile=True: the graphs are captured by '
                             "torch.compile's 'reduce-overhead' mode")
        if cuda_graphs and 'mode' in self.compile_kwargs:
            raise ValueError(f"cuda_graphs=True sets torch.compile mode='reduce-overhead'; "
                             f"drop mode={self.compile_kwargs['mode']!r} from compile")
        self.cuda_graphs = bool(cuda_graphs)
        self._compiled_fns = {}
        self._warned_cpu_graphs = False
        if self.compile_kwargs is not None:
            self.unet.to(memory_format=torch.channels_last)

    def _check_class_label(self, class_label):
        num_classes = 1000 if self.flags['class_cond'] else None
        if num_classes is None:
            if class_label is not None:
                raise ValueError('class_label is set but this arch is not class-conditional')
            return None
        if class_label is None:
            raise ValueError('this arch is class-conditional: set class_label to an ImageNet '
                             'class index in [0, 1000) (it is fed to every image)')
        if not 0 <= int(class_label) < num_classes:
            raise ValueError(f'class_label {class_label} is outside [0, {num_classes})')
        return int(class_label)

    def _frozen_block_prefixes(self):
        """state-dict prefixes (under ``unet.``) of the U-Net parts that do not train.

        Besides the frozen part, the blocks after the deepest output and the final ``out``
        layer never receive gradients (the forward stops before them); they are frozen too,
        so DDP finds no unused parameters.
        """
        if self.frozen:
            return ('',)
        names = ['out.']
        if self.trainable_from is not None:
            names += ['time_embed.', 'label_emb.']
        specs = self.unet.block_specs()
        for spec in specs:
            before = self.trainable_from is not None and spec.index < self.trainable_from
            if before or spec.index > max(self.blocks):
                names.append(block_module_name(spec, specs) + '.')
        return tuple(names)

    def _freeze(self):
        if self.trainable_from is not None and not 1 <= self.trainable_from <= self.unet.num_blocks:
            raise ValueError(f'trainable_from={self.trainable_from} is outside '
                             f'1..{self.unet.num_blocks}')
        prefixes = self._frozen_block_prefixes()
        for name, param in self.unet.named_parameters():
            if name.startswith(prefixes):
                param.requires_grad_(False)

    def train(self, mode=True):
        """Switch train/eval mode; frozen U-Net parts stay in eval mode (dropout off)."""
        super().train(mode)
        prefixes = self._frozen_block_prefixes()
        for name, module in self.unet.named_modules():
            if name and (name + '.').startswith(prefixes):
                module.eval()
        if self.frozen:
            self.unet.eval()
        return self

    def _reloaded_modules(self):
        # A frozen U-Net is reloaded from `checkpoint`: run checkpoints do not store it.
        return ('unet', ) if self.frozen and self.checkpoint is not None else ()

    # ------------------------------------------------------------------ shapes
    def block_shape(self, block):
        """ShapeSpec of one block's feature at one timestep."""
        spec = {s.index: s for s in self.unet.block_specs()}[block]
        return ShapeSpec(spec.channels, spec.stride)

    # ------------------------------------------------------------------ forward
    def _unet_features(self, x_t, t_batch, blocks, injections):
        y = None
        if self.class_label is not None:
            y = torch.full((len(t_batch),), self.class_label, device=x_t.device,
                           dtype=torch.long)
        checkpoint_fn = None
        if self.with_cp and torch.is_grad_enabled():
            def checkpoint_fn(block, h, emb):
                return torch_checkpoint.checkpoint(block, h, emb, use_reentrant=False)
        if self.compile_kwargs is not None and checkpoint_fn is None:
            return self._compiled_features(x_t, t_batch, blocks, y, injections)
        with self._autocast(x_t.device.type):
            return self.unet.forward_intermediates(
                x_t, t_batch, blocks, y=y, stop_early=True, injections=injections,
                checkpoint_fn=checkpoint_fn)

    def _compiled_features(self, x_t, t_batch, blocks, y, injections):
        """The compiled prefix of the U-Net (see ``compile``): block -> ``(N, C, H, W)``."""
        device = x_t.device.type
        graphs = self.cuda_graphs and device == 'cuda'
        if self.cuda_graphs and not graphs and not self._warned_cpu_graphs:
            warnings.warn(f'cuda_graphs=True has no effect on {device} inputs: running the '
                          'compiled function without CUDA graphs')
            self._warned_cpu_graphs = True
        key = (tuple(sorted(set(blocks))), self.dtype, device)
        fn = self._compiled_fns.get(key)
        if fn is None:
            fn = self._compile_features(key[0], AUTOCAST_DTYPES[self.dtype], device, graphs)
            self._compiled_fns[key] = fn
        x_t = x_t.contiguous(memory_format=torch.channels_last)
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
            return {b: f.clone() for b, f in fn(x_t, t_batch, y, injections).items()}
        return fn(x_t, t_batch, y, injections)

    def _compile_features(self, blocks, autocast_dtype, device, graphs):
        unet = self.unet

        def features(x_t, t_batch, y, injections):
            with torch.autocast(device, dtype=autocast_dtype or torch.float32,
                                enabled=autocast_dtype is not None):
                feats = unet.forward_intermediates(x_t, t_batch, blocks, y=y, stop_early=True,
                                                   injections=injections)
            return {b: f.contiguous() for b, f in feats.items()}

        kwargs = dict(self.compile_kwargs)
        if graphs:
            kwargs['mode'] = 'reduce-overhead'
        return torch.compile(features, **kwargs)

    def __getstate__(self):
        # compiled functions hold the U-Net they were traced from: copies compile anew
        state = super().__getstate__()
        if '_compiled_fns' in state:
            state['_compiled_fns'] = {}
        return state
