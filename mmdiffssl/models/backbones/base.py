"""The feature contract every diffusion backbone fills: :class:`DiffusionBackbone`.

A diffusion backbone maps an image batch to features of a denoising network:

    x (B, 3, H, W) in [-1, 1] --encode--> x0 (pixels, or VAE latents)
      --q_sample at each timestep (noise mode of :mod:`mmdiffssl.models.noise`)-->
      --run_network (up to the deepest requested block)--> {block: (T * B, C_b, H_b, W_b)}
      --> (T, B, C_b, H_b, W_b) per block --fuse--> one ``(B, C, H', W')`` map per block

A family (``ADMBackbone``, ``SDBackbone``, ``DiffusersUNetBackbone``) fills five abstract
methods; everything else is here, once, for all of them:

================================  ==========================================================
family fills                      base gives
================================  ==========================================================
``_build_network()``              shared constructor arguments, their validation
``_describe_blocks()``            the :class:`BlockTable` (``self.block_table``), the block
                                  resolver (numbers, names, ``'pyramid'``, ``'all'``), the
                                  timestep resolver, ``output_shape()``, ``size_divisibility``
``_prune(deepest)``               unrun blocks dropped at construction (weights off the model;
                                  ``_load_weights()`` then loads what is kept)
``run_network(x_t, t, blocks)``   ``intermediates``/``intermediates_at``/``forward``, noise,
                                  fusion, the no-graph rule of frozen backbones
``cache_key()``                   one freezing routine (``frozen_prefixes()``), run
                                  checkpoints without reloaded weights, ``frozen_dtype``
================================  ==========================================================

Generic features (feature cache, teacher cache, layer decay, DifFeed injections, the sweep,
the PCA tool, the benchmark, ``tools/print_blocks.py``) use only this contract.
"""
import contextlib
import hashlib
import json
import os
from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import torch
from mmengine.dist import get_rank
from mmengine.model import BaseModule

from mmdiffssl.models.input_range import check_pixel_range_once
from mmdiffssl.models.noise import DiffusionNoise

from .taps import resolve_taps, tap_hooks

#: ``dtype`` argument -> autocast dtype (None: no autocast).
AUTOCAST_DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
#: ``frozen_dtype`` argument -> storage dtype of frozen weights.
FROZEN_DTYPES = {None: None, 'fp32': None, 'bf16': torch.bfloat16}
FUSE_MODES = ('concat', 'mean')


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride (input size / feature size) of one backbone output."""
    channels: int
    stride: int


@dataclass(frozen=True)
class BlockInfo:
    """One row of a backbone's block table.

    Attributes:
        index: 1-based block number in execution order (the paper's numbering for ADM).
        name: the block's module path inside the network, e.g. ``'input_blocks.3'`` or
            ``'up_blocks.1'``; accepted wherever block numbers are.
        module: the same module's path inside the backbone, e.g. ``'unet.input_blocks.3'``
            (parameter names of the block start with ``module + '.'``).
        kind: ``'input'``, ``'middle'`` or ``'output'``.
        channels: channels of the block's feature at one timestep.
        stride: backbone input size / feature size.
        feature: what exactly the feature is (the family's one definition).
        cross_attention: the block has cross-attention layers (text conditioning).
    """
    index: int
    name: str
    module: str
    kind: str
    channels: int
    stride: int
    feature: str
    cross_attention: bool = False


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


class BlockTable(Sequence):
    """The rows of a backbone's blocks, and the one resolver of what users pass for them.

    Args:
        rows (Sequence[BlockInfo]): one row per block, ``rows[i].index == i + 1``.
        family (str): the backbone family, for error messages.
    """

    def __init__(self, rows, family):
        self.rows = tuple(rows)
        self.family = family
        for i, row in enumerate(self.rows, start=1):
            if row.index != i:
                raise ValueError(f'{family} block table row {i} has index {row.index}')
        self._by_name = {row.name: row for row in self.rows}

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def row(self, block):
        """The row of a block given by number or name."""
        return self.rows[self.resolve(block)[0] - 1]

    def block_of(self, name):
        """Number of the block holding the backbone parameter or module ``name`` (a path in
        the backbone, e.g. ``'unet.input_blocks.3.0.in_layers.2.weight'``); None outside
        every block."""
        return next((r.index for r in self.rows if name.startswith(r.module + '.')), None)

    def allowed(self):
        """What :meth:`resolve` accepts, in words."""
        return (f"block numbers 1..{len(self)}, module names ({', '.join(self._by_name)}), "
                "'pyramid' or 'all'")

    def _one(self, block):
        if isinstance(block, str):
            if block in self._by_name:
                return self._by_name[block].index
            raise ValueError(f"block {block!r} is not a block of this {self.family}: give "
                             f'{self.allowed()} (tools/print_blocks.py lists them)')
        if _is_int(block) and 1 <= block <= len(self):
            return int(block)
        what = 'outside' if _is_int(block) else f'a {type(block).__name__}, not one of'
        raise ValueError(f'block {block!r} is {what} this {self.family}\'s blocks: give '
                         f'{self.allowed()} (tools/print_blocks.py lists them)')

    def resolve(self, blocks, pyramid_strides=None):
        """Block numbers of ``blocks``.

        Args:
            blocks (int | str | Sequence[int | str]): a block number, a module name,
                ``'pyramid'`` (see :meth:`pyramid`), ``'all'``, or a sequence of numbers and
                names (kept in the given order).
            pyramid_strides (Sequence[int], optional): strides of ``'pyramid'``.

        Returns:
            tuple[int]: 1-based block numbers.

        Raises:
            ValueError: one error naming the first bad value and what is allowed (floats
                and bools are refused, not truncated).
        """
        if blocks == 'pyramid':
            return self.pyramid(pyramid_strides)
        if blocks == 'all':
            return tuple(range(1, len(self) + 1))
        if isinstance(blocks, (str, Integral)):
            blocks = (blocks, )
        if not isinstance(blocks, Sequence):
            raise ValueError(f'blocks={blocks!r} is not allowed: give {self.allowed()}')
        out = tuple(self._one(b) for b in blocks)
        if not out:
            raise ValueError('blocks is empty: request at least one block')
        return out

    def pyramid(self, strides=None):
        """The last decoder block at each stride: the pyramid FPN and UPerNet read.

        Args:
            strides (Sequence[int], optional): wanted strides of the backbone input, in
                output order; None for every decoder stride, finest first.

        Returns:
            tuple[int]: block numbers, one per stride (adm-256-uncond at 4, 8, 16, 32: 30,
            27, 24, 21).
        """
        decoder = [r for r in self.rows if r.kind == 'output']
        have = sorted({r.stride for r in decoder})
        chosen = []
        for stride in (have if strides is None else strides):
            at = [r.index for r in decoder if r.stride == stride]
            if not at:
                raise ValueError(f'no decoder block at stride {stride!r} in this '
                                 f'{self.family}; its decoder has strides {have}')
            chosen.append(at[-1])
        return tuple(chosen)

    def format(self, size, extra=None):
        """Lines of the table for ``tools/print_blocks.py``, feature sizes at ``size`` px.

        Args:
            size (int): input side in pixels.
            extra (dict[int, str], optional): one more column per block (e.g. parameters).
        """
        head = (f'{"block":>5}  {"kind":<6}  {"channels":>8}  {"stride":>6}  '
                f'{f"size at {size}px":>14}  {"module":<16}  xattn')
        if extra:
            head += f'  {extra.get("title", "")}'
        lines = [head]
        for row in self.rows:
            side = size // row.stride
            line = (f'{row.index:>5}  {row.kind:<6}  {row.channels:>8}  {row.stride:>6}  '
                    f'{f"{side}x{side}":>14}  {row.name:<16}  '
                    f'{"yes" if row.cross_attention else "no ":<5}')
            if extra:
                line += f'  {extra.get(row.index, "")}'
            lines.append(line.rstrip())
        features = sorted({(r.kind, r.feature) for r in self.rows})
        lines += [f'{kind} block feature: {feature}' for kind, feature in features]
        return lines


def file_checksum(path):
    """blake2b hex digest of a file's bytes, read in 16 MB chunks."""
    digest = hashlib.blake2b(digest_size=20)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 24), b''):
            digest.update(chunk)
    return digest.hexdigest()


_FINGERPRINTS = {}


def file_fingerprint(path):
    """:func:`file_checksum` of a weights file, memoised by path, size and ``mtime_ns``."""
    stat = os.stat(path)
    stamp = (stat.st_size, stat.st_mtime_ns)
    memo = _FINGERPRINTS.get(path)
    if memo is None or memo[0] != stamp:
        memo = _FINGERPRINTS[path] = (stamp, file_checksum(path))
    return memo[1]


_SHAPES_ONLY = [False]


@contextlib.contextmanager
def shapes_only():
    """Build backbones for their shapes alone: on the meta device, no weights read.

    Families honour :func:`weights_skipped` (no checkpoint is read, random re-draws and
    text encoders are skipped); the tables and ``output_shape()`` are those of the real
    model. Used where a config's layout is needed without its weights (the feature cache's
    stand-in backbone).
    """
    previous = _SHAPES_ONLY[0]
    _SHAPES_ONLY[0] = True
    try:
        with torch.device('meta'):
            yield
    finally:
        _SHAPES_ONLY[0] = previous


def weights_skipped():
    """True inside :func:`shapes_only`."""
    return _SHAPES_ONLY[0]


def jsonable(value):
    """Config values (ConfigDict, tuples, tensors) as plain JSON-able data."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if torch.is_tensor(value):
        return tensor_fingerprint(value)
    return repr(value)


def tensor_fingerprint(tensor):
    """blake2b hex digest of a tensor's shape, dtype and values."""
    digest = hashlib.blake2b(digest_size=20)
    tensor = tensor.detach().cpu().contiguous()
    digest.update(f'{tuple(tensor.shape)}{tensor.dtype}'.encode())
    digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b'')
    return digest.hexdigest()


def key_hash(key):
    """Short hash of a JSON-able key (cache folder names)."""
    return hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=12).hexdigest()


def encode_fingerprint(fingerprint):
    """A JSON-able weights fingerprint as the 1-D uint8 tensor of its JSON text (what a
    backbone's ``_extra_state`` holds in run checkpoints)."""
    data = json.dumps(fingerprint, sort_keys=True).encode()
    return torch.tensor(list(data), dtype=torch.uint8)


def decode_fingerprint(state):
    """The fingerprint :func:`encode_fingerprint` stored in ``state`` (a uint8 tensor).

    Raises:
        ValueError: ``state`` is not such a tensor (e.g. a noise generator's state).
    """
    if not torch.is_tensor(state) or state.dtype != torch.uint8 or state.dim() != 1:
        raise ValueError(f'not an encoded weights fingerprint: {type(state).__name__}'
                         f'{tuple(state.shape) if torch.is_tensor(state) else ""}')
    try:
        return json.loads(bytes(state.tolist()).decode())
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError(f'not an encoded weights fingerprint ({err})') from None


class DiffusionBackbone(BaseModule, metaclass=ABCMeta):
    """The contract of every diffusion backbone (abstract; see the module docstring).

    A family stores its own constructor arguments and calls ``super().__init__(**shared)``;
    this constructor then calls, in order, ``_build_network()`` (modules and
    ``self.schedule``), ``_describe_blocks()`` (the block table), resolves ``blocks`` and
    ``timesteps``, calls ``_prune(deepest)`` and ``_load_weights()``, and freezes.

    Args (shared by every family):
        blocks (int | str | Sequence[int | str]): blocks to return: numbers, module names,
            ``'pyramid'`` (the last decoder block at each of ``pyramid_strides``) or
            ``'all'`` (:meth:`BlockTable.resolve`); default the family's; ``()`` with
            ``taps`` returns the taps alone.
        taps (str | Sequence[str]): tensors inside blocks returned after the blocks: module
            paths relative to the network (``'middle_block.2.out_layers.3'``), or an
            attention layer's ``'<path>:q'``, ``':k'``, ``':v'``, ``':attn'``
            (:mod:`~mmdiffssl.models.backbones.taps`; ``tools/print_blocks.py --taps BLOCK``
            lists a block's modules).
        timesteps (int | Sequence[int]): training timesteps in [0, num_steps); integers
            only; default the family's.
        noise (str): 'fresh', 'fixed', 'none' or 'ensemble' (:mod:`mmdiffssl.models.noise`).
        noise_seed (int): seed of the noise.
        ensemble_size (int): draws averaged in 'ensemble' mode.
        fuse_timesteps (str): 'concat' (channels of every timestep, in the given order) or
            'mean'.
        pyramid_strides (Sequence[int], optional): strides of ``blocks='pyramid'``; default
            the family's ``default_pyramid_strides``.
        run_until (int | str, optional): keep the network at least up to this block; blocks
            after the deepest of it and ``blocks`` are dropped at construction (their weights
            never reach the model). Wrappers that run further (DifFeed's pass 1) set it.
        prune (bool): False keeps the whole network, output layers included (reference
            comparisons, ``tools/print_blocks.py``); ``run_until`` is then the last block.
        frozen (bool): the network never trains: no parameter requires grad, it stays in
            eval mode through ``train()``, and the forward builds no graph unless an input
            or injection needs gradients.
        trainable_from (int | str, optional): with ``frozen=False``, freeze the blocks
            before this one and the network's parameters outside every block (stem and
            embeddings); None trains the whole (kept) network.
        with_cp (bool): gradient checkpointing of each block.
        dtype (str): 'fp32', 'bf16' or 'fp16' autocast of the network (norms stay fp32).
        frozen_dtype (str, optional): 'bf16' stores frozen network weights in bf16 (half
            the memory; needs ``dtype='bf16'``); None keeps fp32.
        init_seed (int): seed of random weights (no checkpoint); the global RNG is not used.
        allow_other_weights (bool): run checkpoints record :meth:`weights_fingerprint`, and
            loading one into a frozen backbone built from other weights files raises (its
            heads were trained on other features); True loads it all the same.
        init_cfg (dict, optional): mmengine init config.
    """

    #: family name used in errors, cache keys and ``tools/print_blocks.py``.
    family = None
    #: defaults of the shared arguments where families differ.
    default_blocks = 'pyramid'
    default_timesteps = (100, )
    default_pyramid_strides = None
    #: the attribute holding the network whose blocks the table describes.
    network_attr = 'unet'
    #: whether ``run_network`` honours ``injections`` (DifFeed).
    supports_injections = False
    #: whether ``run_network`` takes per-image class ``labels`` (class-conditional networks).
    supports_class_labels = False
    #: whether every call must pass ``labels`` (a family sets it per instance).
    needs_labels = False

    def __init__(self,
                 blocks=None,
                 taps=(),
                 timesteps=None,
                 noise='fixed',
                 noise_seed=0,
                 ensemble_size=4,
                 fuse_timesteps='concat',
                 pyramid_strides=None,
                 run_until=None,
                 prune=True,
                 frozen=True,
                 trainable_from=None,
                 with_cp=False,
                 dtype='fp32',
                 frozen_dtype=None,
                 init_seed=0,
                 allow_other_weights=False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        # weights reloaded from their files at construction are left out of run checkpoints
        self._register_state_dict_hook(DiffusionBackbone._drop_reloaded)
        self.register_load_state_dict_post_hook(DiffusionBackbone._ignore_missing_reloaded)
        if fuse_timesteps not in FUSE_MODES:
            raise ValueError(f'fuse_timesteps={fuse_timesteps!r} is not one of {FUSE_MODES}')
        if dtype not in AUTOCAST_DTYPES:
            raise ValueError(f'dtype={dtype!r} is not one of {tuple(AUTOCAST_DTYPES)}')
        if frozen_dtype not in FROZEN_DTYPES:
            raise ValueError(f'frozen_dtype={frozen_dtype!r} is not one of '
                             f'{tuple(FROZEN_DTYPES)}')
        if FROZEN_DTYPES[frozen_dtype] is not None and (not frozen or dtype != frozen_dtype):
            raise ValueError(f"frozen_dtype={frozen_dtype!r} needs frozen=True and "
                             f"dtype={frozen_dtype!r} (the weights are used under autocast)")
        if not _is_int(init_seed):
            raise ValueError(f'init_seed={init_seed!r} is not an integer')
        self.fuse_timesteps = fuse_timesteps
        self.dtype = dtype
        self.frozen_dtype = frozen_dtype
        self.frozen = bool(frozen)
        self.with_cp = bool(with_cp)
        self.init_seed = int(init_seed)
        self.allow_other_weights = bool(allow_other_weights)
        self.noise = DiffusionNoise(noise, noise_seed, ensemble_size, rank=get_rank())

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.init_seed)   # random weights never touch the global RNG
            self.schedule = self._build_network()
        self.block_table = BlockTable(self._describe_blocks(), self.family)
        self.pyramid_strides = (self.default_pyramid_strides if pyramid_strides is None
                                else tuple(pyramid_strides))
        self.taps = resolve_taps(taps, self.block_table, self.network, self._attention_kind)
        if self.taps and blocks is not None and not isinstance(blocks, (str, Integral)) \
                and len(blocks) == 0:
            self.blocks = ()          # taps only
        else:
            self.blocks = self.block_table.resolve(
                self.default_blocks if blocks is None else blocks, self.pyramid_strides)
        self.timesteps = self.resolve_timesteps(
            self.default_timesteps if timesteps is None else timesteps)
        self._tap_shapes = None
        if not prune:
            self.run_until = len(self.block_table)
        elif run_until is None:
            self.run_until = self.deepest_block
        else:
            self.run_until = max(self.deepest_block, self.block_table.resolve(run_until)[0])
        self.trainable_from = None if trainable_from is None else \
            self.block_table.resolve(trainable_from)[0]
        if self.trainable_from is not None and self.frozen:
            raise ValueError('trainable_from is for frozen=False backbones')
        self.pruned = bool(prune)
        if self.pruned:
            self._prune(self.run_until)
        self._load_weights()
        self._freeze()
        if FROZEN_DTYPES[frozen_dtype] is not None:
            self.network.to(FROZEN_DTYPES[frozen_dtype])

    # ------------------------------------------------------------------ the family's part
    @abstractmethod
    def _build_network(self):
        """Build (and load) the network and the encoder; return the training schedule
        (:class:`~mmdiffssl.models.diffusion.DiffusionSchedule`). Runs under a forked RNG
        seeded with ``init_seed``."""

    @abstractmethod
    def _describe_blocks(self):
        """list[BlockInfo] of every block of the full network (strides of the input)."""

    @abstractmethod
    def _prune(self, deepest):
        """Drop what never runs when the forward stops after block ``deepest``: later
        blocks and the output layers (weights and all)."""

    @abstractmethod
    def run_network(self, x_t, t_batch, blocks, injections=None, labels=None):
        """The network's block features of a noised batch.

        Args:
            x_t (Tensor): ``(N, C, h, w)`` noised input of the network.
            t_batch (Tensor): ``(N,)`` integer timesteps.
            blocks (tuple[int]): block numbers.
            injections (dict[int, Tensor], optional): only where ``supports_injections``.
            labels (Tensor, optional): ``(N,)`` class indices, only where
                ``supports_class_labels``.

        Returns:
            dict[int, Tensor]: block -> ``(N, C_b, h_b, w_b)``.
        """

    @abstractmethod
    def weights_fingerprint(self):
        """JSON-able fingerprint of the weights the network was built from (the files' bytes,
        or the random init and its seed), independent of the blocks kept."""

    @abstractmethod
    def cache_key(self):
        """dict of everything that determines the features, JSON-able: the family, the
        weights' fingerprint (independent of ``blocks``), the arch, and
        :meth:`feature_key`. Feature caches, the teacher cache and the sweep key by it."""

    def _load_weights(self):
        """Load weights into the pruned network (families that load after pruning)."""

    def encode(self, x):
        """What is noised: the image itself here; latent families return their latents."""
        return x

    def _check_input(self, x):
        """Family checks of an input batch (channels, size); raise ValueError."""

    def _reloaded_modules(self):
        """Names of submodules whose weights are reloaded from files at construction and
        never train: run checkpoints leave them out and loading tolerates their absence."""
        return ()

    def _attention_kind(self, module):
        """'self' or 'cross' for an attention layer this family splits into q, k, v (taps),
        None for any other module."""
        return None

    def _attention_parts(self, module, args, kwargs):
        """Per-head ``(q, k, v, scale)``, each ``(N, heads, T, d)``, of an attention layer from
        the inputs of its forward (for attention taps)."""
        raise self.unsupported('attention taps')

    def _always_frozen(self):
        """Parameter-name prefixes that never train, frozen or not (e.g. ``'vae.'``)."""
        return ()

    # ------------------------------------------------------------------ table and shapes
    @property
    def network(self):
        """The network whose blocks :attr:`block_table` describes."""
        return getattr(self, self.network_attr)

    def resolve_timesteps(self, timesteps):
        """Validated timesteps: an int or a sequence of ints in [0, num_steps)."""
        steps = self.schedule.num_steps
        if _is_int(timesteps):
            timesteps = (timesteps, )
        if isinstance(timesteps, str) or not isinstance(timesteps, Sequence):
            raise ValueError(f'timesteps={timesteps!r} is not allowed: give integers in '
                             f'[0, {steps})')
        for t in timesteps:
            if not _is_int(t) or not 0 <= t < steps:
                what = 'outside' if _is_int(t) else f'a {type(t).__name__}, not an integer in'
                raise ValueError(f"timestep {t!r} is {what} [0, {steps}) of this {self.family}'s "
                                 f'{self.schedule.name} schedule')
        if not timesteps:
            raise ValueError('timesteps is empty: give at least one timestep')
        return tuple(int(t) for t in timesteps)

    def block_shape(self, block):
        """ShapeSpec of one block's feature at one timestep (channels before fusion)."""
        row = self.block_table.row(block)
        return ShapeSpec(row.channels, row.stride)

    def output_shape(self):
        """list[ShapeSpec]: channels and stride of each output: ``blocks`` in order, then
        ``taps``."""
        fuse = len(self.timesteps) if self.fuse_timesteps == 'concat' else 1
        shapes = [self.block_shape(b) for b in self.blocks] + self.tap_shapes()
        return [ShapeSpec(s.channels * fuse, s.stride) for s in shapes]

    def output_names(self):
        """list: what each output is, in ``output_shape()`` order (block numbers, then tap
        names)."""
        return list(self.blocks) + [t.name for t in self.taps]

    def tap_shapes(self):
        """list[ShapeSpec] of each tap at one timestep, from a shape-only run at the native
        resolution (computed once)."""
        if self._tap_shapes is None:
            self._tap_shapes = self._probe_tap_shapes() if self.taps else []
        return self._tap_shapes

    def _probe_tap_shapes(self):
        size = self.native_resolution or 4 * self.size_divisibility
        size = -(-size // self.size_divisibility) * self.size_divisibility
        feats = self.shape_run(size, (self.taps[0].block, ), self.taps)
        return [ShapeSpec(int(feats[tap.name].shape[1]), size // feats[tap.name].shape[-1])
                for tap in self.taps]

    def shape_run(self, size, blocks, taps=()):
        """Run one ``size`` x ``size`` image (no noise, t = 0) for the output shapes alone: on
        the meta device where the weights are meta (:func:`shapes_only`), else under
        ``FakeTensorMode`` (no memory, no compute). Forward hooks see the shapes too.

        Returns:
            dict[int | str, Tensor]: as :meth:`intermediates` (flattened timesteps).
        """
        from torch._subclasses.fake_tensor import FakeTensorMode
        param = next(self.parameters(), None)
        meta = param is not None and param.is_meta
        mode = contextlib.nullcontext() if meta else FakeTensorMode(allow_non_fake_inputs=True)
        device = 'meta' if meta else (param.device if param is not None else 'cpu')
        with mode, torch.no_grad():
            x = torch.zeros(1, self._input_channels, size, size, device=device)
            x0 = self.encode(x)
            t = torch.zeros(1, dtype=torch.long, device=device)
            labels = torch.zeros(1, dtype=torch.long, device=device) if self.needs_labels else None
            return self._run(lambda draw: x0, x, t, tuple(blocks), None, tuple(taps), labels)

    @property
    def _input_channels(self):
        """Channels of the backbone input."""
        return 3

    @property
    def out_channels(self):
        """list[int]: channels of each output (for necks and heads)."""
        return [s.channels for s in self.output_shape()]

    @property
    def out_strides(self):
        """list[int]: stride of each output."""
        return [s.stride for s in self.output_shape()]

    @property
    def deepest_block(self):
        """int: the deepest block the forward runs (of ``blocks`` and the taps' blocks)."""
        return max(self.blocks + tuple(t.block for t in self.taps))

    @property
    def native_resolution(self):
        """int: the image side the network was trained at (heads' ``in_sizes`` derive from
        it); families override."""
        return None

    @property
    def size_divisibility(self):
        """Input height and width must be multiples of this (the deepest stride)."""
        return max(row.stride for row in self.block_table)

    def feature_key(self):
        """The part of :meth:`cache_key` every family shares (what the forward reads)."""
        return dict(blocks=list(self.blocks), taps=[t.name for t in self.taps],
                    timesteps=list(self.timesteps),
                    fuse=self.fuse_timesteps,
                    noise=dict(mode=self.noise.mode, seed=self.noise.seed,
                               draws=self.noise.num_draws),
                    schedule=tensor_fingerprint(self.schedule.betas),
                    dtype=self.dtype, frozen_dtype=self.frozen_dtype)

    def random_weights_key(self, init):
        """Weights fingerprint of random weights: they are a function of these alone."""
        return f'random:{init}:seed{self.init_seed}'

    def unsupported(self, feature):
        """The one error of a generic feature this family does not support."""
        return ValueError(f'{type(self).__name__} ({self.family}) does not support {feature}')

    # ------------------------------------------------------------------ freezing
    def frozen_prefixes(self):
        """Parameter-name prefixes (relative to the backbone) that never train."""
        prefixes = list(self._always_frozen())
        net = self.network_attr + '.'
        if self.frozen:
            return tuple(prefixes + [net])
        if self.trainable_from is not None:
            blocks = [row.module + '.' for row in self.block_table]
            kept = [n for n, _ in self.named_parameters()]
            stem = sorted({n for n in kept if n.startswith(net)
                           and not n.startswith(tuple(blocks))})
            prefixes += stem
            prefixes += [row.module + '.' for row in self.block_table
                         if row.index < self.trainable_from]
        return tuple(prefixes)

    def _freeze(self):
        prefixes = self.frozen_prefixes()
        for name, param in self.named_parameters():
            if name.startswith(prefixes) or name in prefixes:
                param.requires_grad_(False)

    def train(self, mode=True):
        """Switch train/eval mode; frozen parts stay in eval mode (dropout off)."""
        super().train(mode)
        prefixes = self.frozen_prefixes()
        for name, module in self.named_modules():
            if name and ((name + '.').startswith(prefixes) or name in prefixes):
                module.eval()
        return self

    # ------------------------------------------------------------------ run checkpoints
    def get_extra_state(self):
        """The weights' fingerprint, as a uint8 tensor (travels through weights-only loads)."""
        return encode_fingerprint(self.weights_fingerprint())

    def set_extra_state(self, state):
        """Refuse a run checkpoint of a frozen backbone that was built from other weights."""
        saved = decode_fingerprint(state)
        if not self._reloaded_modules() or self.allow_other_weights:
            return
        current = self.weights_fingerprint()
        if saved != current:
            raise ValueError(f'this run checkpoint was trained on {type(self).__name__} weights '
                             f'{saved}, but the backbone is now built from {current}: its heads '
                             'would read other features. Point the backbone at the weights it '
                             'was trained with, or set allow_other_weights=True if you mean it')

    @staticmethod
    def _drop_reloaded(module, state_dict, prefix, local_metadata):
        for name in module._reloaded_modules():
            for key in [k for k in state_dict if k.startswith(f'{prefix}{name}.')]:
                del state_dict[key]

    @staticmethod
    def _ignore_missing_reloaded(module, incompatible_keys):
        names = module._reloaded_modules()
        if names:
            missing = incompatible_keys.missing_keys
            missing[:] = [k for k in missing
                          if not any(f'.{n}.' in k or k.startswith(f'{n}.') for n in names)]

    # ------------------------------------------------------------------ forward
    def _autocast(self, device_type):
        """Autocast context of ``dtype`` (a disabled one for 'fp32')."""
        autocast_dtype = AUTOCAST_DTYPES[self.dtype]
        if device_type == 'meta':   # shape-only runs
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=autocast_dtype or torch.float32,
                              enabled=autocast_dtype is not None)

    def _graph_needed(self, x, injections):
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return True
        if x.requires_grad:
            return True
        return any(torch.is_tensor(v) and v.requires_grad for v in (injections or {}).values())

    def _check_image(self, x):
        if x.dim() != 4:
            raise ValueError(f'expected a (B, C, H, W) image batch, got shape {tuple(x.shape)}')
        divisor = self.size_divisibility
        if x.shape[-2] % divisor or x.shape[-1] % divisor:
            raise ValueError(f'image size {x.shape[-2]}x{x.shape[-1]} is not divisible by '
                             f'{divisor}, the total downsampling of this {self.family}: pad '
                             f'or resize to multiples of {divisor}')
        self._check_input(x)
        check_pixel_range_once(self, x, type(self).__name__)   # first batch only: one sync

    def _requested(self, blocks, taps):
        """(blocks, taps) a call asks for: the backbone's own when neither is given, only the
        given blocks when ``blocks`` is."""
        if blocks is None and taps is None:
            return self.blocks, self.taps
        blocks = () if blocks is None or (not isinstance(blocks, (str, Integral)) and
                                          len(blocks) == 0) else self.block_table.resolve(blocks)
        taps = () if taps is None else resolve_taps(taps, self.block_table, self.network,
                                                      self._attention_kind)
        deepest = max(tuple(blocks) + tuple(t.block for t in taps), default=0)
        if not deepest:
            raise ValueError('request at least one block or tap')
        if deepest > self.run_until:
            raise ValueError(f'block {deepest} was dropped at construction: this backbone '
                             f'keeps blocks up to {self.run_until} (set run_until to run '
                             'further)')
        return blocks, taps

    def intermediates(self, x, blocks=None, timesteps=None, injections=None, keys=None,
                      taps=None, labels=None):
        """Noise ``x`` at each timestep and return block (and tap) features, unfused.

        This is the one entry point for everything built on the network (heads, DifFeed,
        RepFusion, the dense pyramid).

        Args:
            x (Tensor): ``(B, 3, H, W)`` RGB in [-1, 1].
            blocks (Sequence[int | str], optional): blocks to return; default ``self.blocks``
                (with ``self.taps``); given alone, only these blocks.
            timesteps (Sequence[int], optional): default ``self.timesteps``.
            injections (Mapping[int, Tensor], optional): tensor added to a block's output
                before it is passed on or stored as a skip; ``(B, C_b, H_b, W_b)``, or
                ``(B * len(timesteps), ...)`` with timesteps outermost
                (``supports_injections`` families only).
            keys (Tensor, optional): ``(B,)`` image keys for 'fixed'/'ensemble' noise.
            taps (Sequence[str], optional): taps to return (see ``taps``).
            labels (Tensor, optional): ``(B,)`` class index of each image for a
                class-conditional network (``supports_class_labels`` families only).

        Returns:
            dict[int | str, Tensor]: block number or tap name ->
            ``(len(timesteps), B, C, H', W')``, averaged over noise draws in 'ensemble' mode.
        """
        self._check_image(x)
        return self._intermediates_of(x, self.encode(x), blocks, timesteps, injections, keys,
                                      taps, labels)

    def _intermediates_of(self, x, x0, blocks, timesteps, injections, keys, taps=None,
                          labels=None):
        """:meth:`intermediates` of an already encoded ``x0`` (``x`` is the input image)."""
        blocks, taps = self._requested(blocks, taps)
        timesteps = self.timesteps if timesteps is None else self.resolve_timesteps(timesteps)
        n_t, batch = len(timesteps), x.shape[0]
        t_batch = torch.tensor(timesteps, device=x.device).repeat_interleave(batch)
        if injections:
            injections = {b: v if v.shape[0] == n_t * batch else v.repeat(n_t, 1, 1, 1)
                          for b, v in injections.items()}

        if labels is not None:
            labels = self._check_labels(labels, batch).repeat(n_t)

        def noised(draw):
            return torch.cat([self._q_sample(x0, t, draw, keys) for t in timesteps])
        feats = self._run(noised, x, t_batch, blocks, injections, taps, labels)
        return {b: f.unflatten(0, (n_t, batch)) for b, f in feats.items()}

    def intermediates_at(self, x, t, blocks=None, injections=None, keys=None, taps=None,
                         labels=None):
        """Like :meth:`intermediates` with one timestep per image (e.g. a learned policy's).

        Args:
            x (Tensor): ``(B, 3, H, W)`` RGB in [-1, 1].
            t (Tensor): ``(B,)`` integer timesteps in [0, num_steps).
            blocks (Sequence[int | str], optional): as :meth:`intermediates`.
            injections (Mapping[int, Tensor], optional): ``(B, C_b, H_b, W_b)`` per block.
            keys (Tensor, optional): ``(B,)`` image keys for 'fixed'/'ensemble' noise.
            taps (Sequence[str], optional): as :meth:`intermediates`.
            labels (Tensor, optional): ``(B,)`` class indices, as :meth:`intermediates`.

        Returns:
            dict[int | str, Tensor]: block or tap -> ``(B, C, H', W')``, image i noised to
            ``t[i]`` (and conditioned on ``labels[i]``).
        """
        blocks, taps = self._requested(blocks, taps)
        self._check_image(x)
        if not torch.is_tensor(t) or t.shape != (x.shape[0], ):
            raise ValueError(f't must be a ({x.shape[0]},) tensor of timesteps, one per image; '
                             f'got {t if not torch.is_tensor(t) else tuple(t.shape)}')
        if t.is_floating_point():
            raise ValueError(f't must hold integer timesteps, got dtype {t.dtype}')
        self.resolve_timesteps(t.tolist())
        t = t.to(device=x.device, dtype=torch.long)
        if labels is not None:
            labels = self._check_labels(labels, x.shape[0])
        x0 = self.encode(x)
        return self._run(lambda draw: self._q_sample(x0, t, draw, keys), x, t, blocks,
                         injections, taps, labels)

    def _check_labels(self, labels, batch):
        """``labels`` as a ``(batch,)`` int64 tensor; raises where the family takes none."""
        if not self.supports_class_labels:
            raise self.unsupported('per-image class labels')
        if not torch.is_tensor(labels) or labels.shape != (batch, ) or labels.is_floating_point():
            raise ValueError(f'labels must be a ({batch},) integer tensor, one class per '
                             'image; got ' + (f'shape {tuple(labels.shape)}, {labels.dtype}'
                                               if torch.is_tensor(labels) else repr(labels)))
        return labels.long()

    def _run(self, noised, x, t_batch, blocks, injections, taps=(), labels=None):
        """Network features of ``noised(draw)`` at ``t_batch``, averaged over noise draws.

        Returns:
            dict[int | str, Tensor]: block or tap -> ``(N, C, H', W')`` float32,
            N = ``len(t_batch)``.
        """
        if injections and not self.supports_injections:
            raise self.unsupported('injections (DifFeed)')
        run = tuple(sorted(set(blocks) | {tap.block for tap in taps}))
        out = None
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._graph_needed(x, injections)):
            for draw in range(self.noise.num_draws):
                with tap_hooks(self.network, taps, x.shape[-2:], self._attention_parts,
                               {}) as tapped:
                    feats = self.run_network(noised(draw), t_batch, run, injections,
                                             **({} if labels is None else dict(labels=labels)))
                missing = [t.name for t in taps if t.name not in tapped]
                if missing:
                    raise ValueError(f'taps {missing} did not run: {self.family} calls the '
                                     'layers inside these modules one by one; tap one of '
                                     'their layers (tools/print_blocks.py --taps BLOCK)')
                feats = {b: feats[b].float() for b in blocks}
                feats.update((name, f.float()) for name, f in tapped.items())
                out = feats if out is None else {k: out[k] + feats[k] for k in out}
        if self.noise.num_draws > 1:
            out = {k: f / self.noise.num_draws for k, f in out.items()}
        return out

    def _q_sample(self, x, t, draw, keys):
        noise = self.noise.sample(x.shape, x.device, x.dtype, draw=draw, keys=keys)
        if noise is None:
            return x
        return self.schedule.q_sample(x, t, noise)

    def fuse(self, feature):
        """``(T, B, C, H, W)`` -> ``(B, T * C, H, W)`` ('concat') or ``(B, C, H, W)`` ('mean')."""
        if self.fuse_timesteps == 'mean':
            return feature.mean(0)
        return torch.cat(list(feature), dim=1)

    def forward(self, x):
        """``(B, 3, H, W)`` in [-1, 1] -> tuple of fused features, one per block, then one per
        tap (``output_names()``)."""
        feats = self.intermediates(x)
        return tuple(self.fuse(feats[k]) for k in self.output_names())
