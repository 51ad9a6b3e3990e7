"""ADMBackbone: a guided-diffusion (ADM) U-Net as a multi-scale feature extractor."""
import warnings
from collections.abc import Mapping

import torch
import torch.utils.checkpoint as torch_checkpoint
from torch._subclasses.fake_tensor import is_fake

from mmdiffssl.models.diffusion import DiffusionSchedule
from mmdiffssl.models.unets import adm_flags_from, build_adm_unet
from mmdiffssl.models.unets.adm import AttentionBlock, split_qkv
from mmdiffssl.utils.checkpoint import load_weights
from mmdiffssl.utils.weight_init import redraw_parameters_

from .base import (AUTOCAST_DTYPES, BlockInfo, DiffusionBackbone, file_fingerprint, jsonable,
                   weights_skipped)

#: What an ADM block's feature is, per kind (the paper's numbering: the hooked block output).
ADM_FEATURES = {
    'input': 'output of the whole block (the map stored as its skip)',
    'middle': 'output of the middle block (Res, Attn, Res)',
    'output': 'output of the whole block, after its upsampler if it has one',
}


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
        class_label (int | str, optional): label of class-conditional archs, required for
            them: an ImageNet class index fed to every image (where no labels reach the
            backbone, as in mmdet and mmseg), or ``'per_image'``: each call passes one
            class index per image (``labels`` of :meth:`intermediates` /
            :meth:`intermediates_at`; RepFusion's teacher fed each image's ground truth).
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
        **kwargs: the arguments every family shares (``blocks`` (default 24: block numbers,
            names such as ``'output_blocks.4'``, ``'pyramid'`` at strides 4, 8, 16, 32, or
            ``'all'``), ``timesteps`` (default 150), ``noise``, ``frozen``,
            ``trainable_from``, ``with_cp``, ``dtype``, ``frozen_dtype``, ...): see
            :class:`~.base.DiffusionBackbone`. Blocks after the deepest requested one are
            not built (``run_until``); the checkpoint must still fit the whole arch.

    Blocks: the paper's 1-based numbering through the U-Net (input blocks, the middle block,
    output blocks); each feature is the whole block's output, for an output block after its
    upsampler (``ADM_FEATURES``; ``tools/print_blocks.py ARCH`` prints the table).

    Shapes:
        input ``(B, 3, H, W)`` with H and W multiples of the arch's total downsampling;
        output: a tuple with one ``(B, C_i, H / s_i, W / s_i)`` tensor per block, where
        ``C_i`` is the block's channels times ``len(timesteps)`` for 'concat'.
        ``output_shape()`` gives every ``(C_i, s_i)``.
    """

    family = 'ADM'
    default_blocks = (24, )
    default_timesteps = (150, )
    default_pyramid_strides = (4, 8, 16, 32)
    supports_injections = True
    supports_class_labels = True

    def __init__(self,
                 arch='adm-256-uncond',
                 checkpoint=None,
                 checkpoint_prefix=None,
                 checkpoint_key=None,
                 class_label=None,
                 random_init='guided',
                 compile=False,
                 cuda_graphs=False,
                 **kwargs):
        if random_init not in ('guided', 'redraw'):
            raise ValueError(f"random_init={random_init!r} is not 'guided' or 'redraw'")
        self.flags = adm_flags_from(arch)
        self.checkpoint = checkpoint
        self.checkpoint_prefix = checkpoint_prefix
        self.checkpoint_key = checkpoint_key
        self.random_init = random_init
        self.class_label = self._check_class_label(class_label)
        self.needs_labels = self.class_label == 'per_image'
        super().__init__(**kwargs)
        self._setup_compile(compile, cuda_graphs)

    # ------------------------------------------------------------------ the contract
    def _build_network(self):
        self.unet = build_adm_unet(self.flags)
        # the full arch's keys and shapes: a checkpoint must fit them all, pruned or not
        self._arch_shapes = {k: v.shape for k, v in self.unet.state_dict().items()}
        if self.checkpoint is None and self.random_init == 'redraw' and not weights_skipped():
            redraw_parameters_(self.unet, torch.Generator().manual_seed(self.init_seed))
        return DiffusionSchedule(self.flags['noise_schedule'], self.flags['diffusion_steps'])

    def _describe_blocks(self):
        return [BlockInfo(s.index, name, f'unet.{name}', s.kind, s.channels, s.stride,
                          ADM_FEATURES[s.kind])
                for s, name in zip(self.unet.block_specs(), self._block_names())]

    def _block_names(self):
        n_in = len(self.unet.input_blocks)
        for spec in self.unet.block_specs():
            if spec.kind == 'input':
                yield f'input_blocks.{spec.index - 1}'
            elif spec.kind == 'middle':
                yield 'middle_block'
            else:
                yield f'output_blocks.{spec.index - n_in - 2}'

    def _prune(self, deepest):
        self.unet.prune_after(deepest)

    def _load_weights(self):
        if self.checkpoint is not None and not weights_skipped():
            load_weights(self.unet, self.checkpoint, prefix=self.checkpoint_prefix,
                         key=self.checkpoint_key, arch_shapes=self._arch_shapes)

    def weights_fingerprint(self):
        if self.checkpoint is not None:
            return (f'file:{file_fingerprint(self.checkpoint)}:prefix={self.checkpoint_prefix}'
                    f':key={self.checkpoint_key}')
        return self.random_weights_key(self.random_init)

    def cache_key(self):
        return dict(family=self.family, weights=self.weights_fingerprint(),
                    arch=jsonable(self.flags),
                    class_label=self.class_label, **self.feature_key())

    @property
    def native_resolution(self):
        return int(self.flags['image_size'])

    def _reloaded_modules(self):
        # A frozen U-Net is reloaded from `checkpoint`: run checkpoints do not store it.
        return ('unet', ) if self.frozen and self.checkpoint is not None else ()

    @property
    def _input_channels(self):
        return self.unet.in_channels

    def _attention_kind(self, module):
        return 'self' if isinstance(module, AttentionBlock) else None

    def _attention_parts(self, module, args, kwargs):
        x = args[0]
        n, c, height, width = x.shape
        q, k, v = split_qkv(module.qkv(module.norm(x.reshape(n, c, height * width))),
                            module.num_heads, module.new_order)
        return q, k, v, q.shape[-1] ** -0.5

    def _check_input(self, x):
        if x.shape[1] != self.unet.in_channels:
            raise ValueError(f'expected {self.unet.in_channels} input channels, got '
                             f'{x.shape[1]} (shape {tuple(x.shape)})')

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
        if self.compile_kwargs is not None and self.taps:
            raise ValueError('taps are read by forward hooks, which a compiled U-Net does not '
                             'run: use compile=False with taps')
        self.cuda_graphs = bool(cuda_graphs)
        self._compiled_fns = {}
        self._warned_cpu_graphs = False
        if self.compile_kwargs is not None:
            self.unet.to(memory_format=torch.channels_last)

    def _check_class_label(self, class_label):
        if not self.flags['class_cond']:
            if class_label is not None:
                raise ValueError('class_label is set but this arch is not class-conditional')
            return None
        if class_label is None:
            raise ValueError('this arch is class-conditional: set class_label to an ImageNet '
                             "class index in [0, 1000) (it is fed to every image) or 'per_image' "
                             '(each call passes labels)')
        if class_label == 'per_image':
            return class_label
        if not (isinstance(class_label, int) and not isinstance(class_label, bool)
                and 0 <= class_label < 1000):
            raise ValueError(f"class_label={class_label!r} is not an integer in [0, 1000) or "
                             "'per_image'")
        return class_label

    # ------------------------------------------------------------------ forward
    def run_network(self, x_t, t_batch, blocks, injections=None, labels=None):
        y = self._class_labels(labels, len(t_batch), x_t.device)
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

    def _class_labels(self, labels, batch, device):
        """``y`` of the U-Net: ``(N,)`` class indices, or None for unconditional archs."""
        if self.class_label == 'per_image':
            if labels is None:
                raise ValueError("class_label='per_image': pass labels (one ImageNet class "
                                 'index per image) with each call')
            real = labels.device.type != 'meta' and not is_fake(labels)   # not a shape run
            if real and labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < 1000:
                raise ValueError(f'labels must be ImageNet class indices in [0, 1000), got '
                                 f'{labels.min().item()}..{labels.max().item()}')
            return labels.to(device)
        if labels is not None:
            raise ValueError(f'labels were passed but class_label={self.class_label!r}: per-image '
                             "labels need class_label='per_image' (a class-conditional arch)")
        if self.class_label is None:
            return None
        return torch.full((batch, ), self.class_label, device=device, dtype=torch.long)

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
