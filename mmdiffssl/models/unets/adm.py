"""The guided-diffusion (ADM) U-Net with a block-level feature API.

:class:`ADMUNet` computes the same function as guided-diffusion's
``UNetModel`` (Dhariwal & Nichol, 2021) and has exactly its ``state_dict``
layout, so OpenAI's published ``.pt`` checkpoints load with ``strict=True``.
On top of the plain ``forward`` it exposes the U-Net as a numbered sequence
of blocks (see :meth:`ADMUNet.forward_intermediates`) for feature
extraction, feature injection and per-block activation checkpointing.

Mixed precision and gradient checkpointing are left to the caller (autocast
and ``checkpoint_fn``); group norms always compute in float32.

Notation used in the docstrings: ``N`` batch size, ``C`` channels, ``H, W``
spatial size, ``E = 4 * model_channels`` the embedding width, ``T = H * W``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Signature of ``checkpoint_fn``: ``checkpoint_fn(block, h, emb) -> Tensor``.
CheckpointFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class BlockSpec:
    """Static description of one U-Net block's output feature.

    Attributes:
        index: 1-based block number (see :meth:`ADMUNet.forward_intermediates`).
        kind: ``'input'``, ``'middle'`` or ``'output'``.
        channels: channels of the block's output.
        stride: input size / feature size (a power of two).
    """

    index: int
    kind: str
    channels: int
    stride: int


def timestep_embedding(timesteps: Tensor, dim: int,
                       max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps.

    Args:
        timesteps: shape ``(N,)``.
        dim: embedding width; an odd width is zero-padded by one column.
        max_period: period of the slowest frequency.

    Returns:
        float32 tensor of shape ``(N, dim)``: cosines of all frequencies
        followed by sines of all frequencies.
    """
    half = dim // 2
    exponents = torch.arange(half, dtype=torch.float32,
                             device=timesteps.device) / half
    freqs = torch.exp(-math.log(max_period) * exponents)
    angles = timesteps.float()[:, None] * freqs[None, :]
    emb = torch.cat([angles.cos(), angles.sin()], dim=1)
    return F.pad(emb, (0, dim % 2))


def _split_scale_shift(emb_out: Tensor) -> tuple[Tensor, Tensor]:
    """Split a ResBlock's ``(N, 2C, 1, 1)`` conditioning into scale, shift.

    Each result has shape ``(N, C, 1, 1)``.
    """
    scale, shift = emb_out.chunk(2, dim=1)
    return scale, shift


def split_qkv(qkv: Tensor, num_heads: int,
               new_order: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Unpack a ``(N, 3C, T)`` qkv projection into per-head q, k, v.

    The legacy order packs channels as ``(heads, 3, head_dim)``; the new
    order as ``(3, heads, head_dim)``. Each result has shape
    ``(N, heads, T, C // heads)`` with a contiguous last dimension, as the
    fused scaled-dot-product-attention kernels require.
    """
    n, width, length = qkv.shape
    head_dim = width // (3 * num_heads)
    packing = (3, num_heads) if new_order else (num_heads, 3)
    parts = qkv.reshape(n, *packing, head_dim, length)
    if not new_order:
        parts = parts.transpose(1, 2)  # (N, 3, heads, head_dim, T)
    q, k, v = parts.transpose(-1, -2).contiguous().unbind(1)
    return q, k, v


def _resample(x: Tensor, direction: Optional[str]) -> Tensor:
    """Parameter-free 2x resampling of ``(N, C, H, W)``.

    ``'up'``: nearest-neighbour to ``(N, C, 2H, 2W)``; ``'down'``: 2x2 average
    pooling to ``(N, C, H/2, W/2)``; ``None``: identity.
    """
    if direction == 'up':
        return F.interpolate(x, scale_factor=2, mode='nearest')
    if direction == 'down':
        return F.avg_pool2d(x, kernel_size=2, stride=2)
    return x


class GroupNorm32(nn.GroupNorm):
    """32-group GroupNorm evaluated in float32, returned in the input dtype."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, *)`` -> ``(N, C, *)``; the affine parameters are used in float32 too
        (they may be stored in bf16: ``frozen_dtype``)."""
        return F.group_norm(x.float(), self.num_groups, self.weight.float(),
                            self.bias.float(), self.eps).type(x.dtype)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """Timestep-conditioned residual block, optionally resampling by 2x.

    Args:
        channels: input channels ``C``.
        emb_channels: embedding width ``E``.
        out_channels: output channels ``C'``.
        dropout: dropout probability before the last convolution.
        use_scale_shift_norm: condition via ``norm(h) * (1 + scale) + shift``
            instead of adding the projected embedding.
        resample: ``'up'``, ``'down'`` or ``None``; applied to both the
            residual branch (between activation and first conv) and the skip.
    """

    def __init__(self, channels: int, emb_channels: int, out_channels: int,
                 dropout: float, use_scale_shift_norm: bool,
                 resample: Optional[str] = None):
        super().__init__()
        self.use_scale_shift_norm = use_scale_shift_norm
        self.resample = resample
        self.in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(),
            _conv3x3(channels, out_channels))
        emb_out = 2 * out_channels if use_scale_shift_norm else out_channels
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(dropout),
            _conv3x3(out_channels, out_channels))
        if out_channels == channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """``x (N, C, H, W)``, ``emb (N, E)`` -> ``(N, C', H', W')``.

        ``H' = 2H`` when upsampling, ``H / 2`` when downsampling, else ``H``.
        """
        norm_in, act_in, conv_in = self.in_layers
        h = _resample(act_in(norm_in(x)), self.resample)
        h = conv_in(h)
        x = _resample(x, self.resample)

        emb_out = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        norm_out, rest_out = self.out_layers[0], self.out_layers[1:]
        if self.use_scale_shift_norm:
            scale, shift = _split_scale_shift(emb_out)
            h = rest_out(norm_out(h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all spatial positions, with residual.

    Args:
        channels: channels ``C``.
        num_heads: number of heads, used when ``num_head_channels == -1``.
        num_head_channels: channels per head; ``-1`` to use ``num_heads``.
        new_order: qkv channel packing, see :func:`split_qkv`.
    """

    def __init__(self, channels: int, num_heads: int, num_head_channels: int,
                 new_order: bool):
        super().__init__()
        if num_head_channels != -1:
            if channels % num_head_channels:
                raise ValueError(
                    f'attention channels {channels} are not divisible by '
                    f'num_head_channels={num_head_channels}')
            num_heads = channels // num_head_channels
        elif channels % num_heads:
            raise ValueError(f'attention channels {channels} are not '
                             f'divisible by num_heads={num_heads}')
        self.num_heads = num_heads
        self.new_order = new_order
        self.norm = GroupNorm32(channels)
        # 1x1 Conv1d (not Linear) to keep the reference's parameter shapes.
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H, W)``."""
        n, c, height, width = x.shape
        flat = x.reshape(n, c, height * width)
        q, k, v = split_qkv(self.qkv(self.norm(flat)), self.num_heads,
                             self.new_order)
        attended = F.scaled_dot_product_attention(q, k, v)  # (N, heads, T, d)
        attended = attended.transpose(-1, -2).reshape(n, c, height * width)
        return (flat + self.proj_out(attended)).reshape(n, c, height, width)


class Downsample(nn.Module):
    """2x downsampling, ``(N, C, H, W)`` -> ``(N, C, H/2, W/2)``: a strided
    3x3 conv if ``use_conv`` else average pooling (both stored as ``op``)."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = (_conv3x3(channels, channels, stride=2) if use_conv
                   else nn.AvgPool2d(kernel_size=2, stride=2))

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """2x nearest upsampling, ``(N, C, H, W)`` -> ``(N, C, 2H, 2W)``, followed
    by a 3x3 conv (``conv``) if ``use_conv``."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.conv = _conv3x3(channels, channels) if use_conv else None

    def forward(self, x: Tensor) -> Tensor:
        x = _resample(x, 'up')
        return x if self.conv is None else self.conv(x)


class TimestepSequential(nn.Sequential):
    """A U-Net block: runs its layers in order, passing the embedding to
    the :class:`ResBlock` layers. ``x (N, C, H, W)``, ``emb (N, E)``."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


def _call_block(block: nn.Module, h: Tensor, emb: Tensor) -> Tensor:
    return block(h, emb)


class ADMUNet(nn.Module):
    """Guided-diffusion's ``UNetModel`` (2-D), parameter-compatible.

    All arguments mirror ``guided_diffusion.unet.UNetModel``.

    Args:
        image_size: nominal input resolution; only used to report
            :meth:`block_specs` (inputs of other sizes are accepted).
        in_channels: input channels.
        model_channels: base width; also the timestep embedding's sinusoid
            width (the embedding MLP outputs ``E = 4 * model_channels``).
        out_channels: output channels (6 when the model learns sigma).
        num_res_blocks: ResBlocks per level.
        attention_resolutions: downsample rates ``ds`` (1, 2, 4, ...) at
            which ResBlocks are followed by attention.
        dropout: dropout probability inside ResBlocks.
        channel_mult: width multiplier per level; ``len(channel_mult) - 1``
            2x downsamplings.
        conv_resample: learned convs in the non-residual up/downsamplers.
        num_classes: number of classes for a class-conditional model.
        num_heads: attention heads (if ``num_head_channels == -1``).
        num_head_channels: fixed channels per head, or ``-1``.
        num_heads_upsample: heads in the decoder; ``-1`` means ``num_heads``.
        use_scale_shift_norm: FiLM-like ResBlock conditioning.
        resblock_updown: resample with ResBlocks instead of
            :class:`Downsample` / :class:`Upsample`.
        use_new_attention_order: qkv packing ``(3, heads, d)`` instead of the
            legacy ``(heads, 3, d)``.
    """

    def __init__(self, *, image_size: int, in_channels: int,
                 model_channels: int, out_channels: int, num_res_blocks: int,
                 attention_resolutions: Iterable[int], dropout: float = 0.0,
                 channel_mult: tuple[float, ...] = (1, 2, 4, 8),
                 conv_resample: bool = True,
                 num_classes: Optional[int] = None, num_heads: int = 1,
                 num_head_channels: int = -1, num_heads_upsample: int = -1,
                 use_scale_shift_norm: bool = False,
                 resblock_updown: bool = False,
                 use_new_attention_order: bool = False):
        super().__init__()
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        attention_ds = frozenset(attention_resolutions)
        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_classes = num_classes
        self.channel_mult = tuple(channel_mult)
        #: Input height and width must be multiples of this.
        self.size_divisor = 2 ** (len(self.channel_mult) - 1)

        emb_channels = 4 * model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb_channels), nn.SiLU(),
            nn.Linear(emb_channels, emb_channels))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_channels)

        def res_block(cin: int, cout: int,
                      resample: Optional[str] = None) -> ResBlock:
            return ResBlock(cin, emb_channels, cout, dropout,
                            use_scale_shift_norm, resample)

        def attention(channels: int, heads: int) -> AttentionBlock:
            return AttentionBlock(channels, heads, num_head_channels,
                                  use_new_attention_order)

        specs: list[tuple[str, int, int]] = []  # (kind, channels, stride)
        ch = int(self.channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList(
            [TimestepSequential(_conv3x3(in_channels, ch))])
        specs.append(('input', ch, 1))
        ds = 1
        for level, mult in enumerate(self.channel_mult):
            for _ in range(num_res_blocks):
                layers = [res_block(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_ds:
                    layers.append(attention(ch, num_heads))
                self.input_blocks.append(TimestepSequential(*layers))
                specs.append(('input', ch, ds))
            if level < len(self.channel_mult) - 1:
                down = (res_block(ch, ch, 'down') if resblock_updown
                        else Downsample(ch, conv_resample))
                self.input_blocks.append(TimestepSequential(down))
                ds *= 2
                specs.append(('input', ch, ds))

        self.middle_block = TimestepSequential(
            res_block(ch, ch), attention(ch, num_heads), res_block(ch, ch))
        specs.append(('middle', ch, ds))

        skip_channels = [channels for _, channels, _ in specs[:-1]]
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(self.channel_mult))):
            for i in range(num_res_blocks + 1):
                out_ch = int(mult * model_channels)
                layers = [res_block(ch + skip_channels.pop(), out_ch)]
                ch = out_ch
                if ds in attention_ds:
                    layers.append(attention(ch, num_heads_upsample))
                if level > 0 and i == num_res_blocks:
                    layers.append(res_block(ch, ch, 'up') if resblock_updown
                                  else Upsample(ch, conv_resample))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))
                specs.append(('output', ch, ds))

        self.out = nn.Sequential(
            GroupNorm32(ch), nn.SiLU(), _conv3x3(ch, out_channels))
        self._block_specs = tuple(
            BlockSpec(index, kind, channels, stride)
            for index, (kind, channels, stride) in enumerate(specs, start=1))

    # ------------------------------------------------------------------
    # block numbering
    @property
    def num_blocks(self) -> int:
        """``len(input_blocks) + 1 + len(output_blocks)``."""
        return len(self.input_blocks) + 1 + len(self.output_blocks)

    @property
    def num_kept(self) -> int:
        """Blocks ``1..num_kept`` are built (all but after :meth:`prune_after`)."""
        return getattr(self, '_num_kept', self.num_blocks)

    def prune_after(self, last: int) -> None:
        """Drop blocks after ``last`` and the ``out`` layer, weights and all.

        The forward can then return blocks ``1..last`` only; the state dict holds the kept
        modules' keys (guided-diffusion's names), so a full checkpoint loads into it after
        dropping the keys of the removed modules (:func:`kept_state_dict`).
        """
        self._check_index(last, self.num_blocks, 'prune')
        n_in = len(self.input_blocks)
        self.input_blocks = self.input_blocks[:min(last, n_in)]
        if last <= n_in:
            self.middle_block = None
        self.output_blocks = self.output_blocks[:max(0, last - n_in - 1)]
        self.out = None
        self._num_kept = last

    @property
    def out_index(self) -> int:
        """Pseudo-block index (``num_blocks + 1``) of the final output."""
        return self.num_blocks + 1

    def block_specs(self) -> list[BlockSpec]:
        """Channels and strides of blocks ``1..num_blocks``, without running
        the model. Blocks ``1..len(input_blocks)`` are input blocks, the next
        one the middle block, the rest output blocks."""
        return list(self._block_specs)

    def _blocks(self) -> Iterator[tuple[int, str, nn.Module]]:
        """Yield ``(index, kind, block)`` in execution order (kept blocks only)."""
        for index, spec in enumerate(self._block_specs[:self.num_kept], start=1):
            if spec.kind == 'input':
                yield index, spec.kind, self.input_blocks[index - 1]
            elif spec.kind == 'middle':
                yield index, spec.kind, self.middle_block
            else:
                offset = len(self.input_blocks) + 2
                yield index, spec.kind, self.output_blocks[index - offset]

    # ------------------------------------------------------------------
    # validation
    def _check_index(self, index: int, allowed_max: int, what: str) -> None:
        if not 1 <= index <= allowed_max:
            n_in = len(self.input_blocks)
            final = (f', final output {self.out_index}'
                     if allowed_max == self.out_index else '')
            raise ValueError(
                f'{what} index {index} is out of range 1..{allowed_max} '
                f'(input blocks 1..{n_in}, middle block {n_in + 1}, output '
                f'blocks {n_in + 2}..{self.num_blocks}{final})')

    def _check_inputs(self, x: Tensor, timesteps: Tensor,
                      y: Optional[Tensor]) -> None:
        if x.dim() != 4:
            raise ValueError(f'x must have shape (N, C, H, W), got '
                             f'{tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'x has {x.shape[1]} channels, expected '
                             f'in_channels={self.in_channels}')
        height, width = x.shape[-2:]
        if height % self.size_divisor or width % self.size_divisor:
            raise ValueError(
                f'input size {height}x{width} is not divisible by '
                f'{self.size_divisor} (2 ** (len(channel_mult) - 1)); '
                f'H and W must be multiples of {self.size_divisor}')
        n = x.shape[0]
        if timesteps.shape != (n,):
            raise ValueError(f'timesteps must have shape ({n},), got '
                             f'{tuple(timesteps.shape)}')
        if self.num_classes is None:
            if y is not None:
                raise ValueError('y was given but the model is not '
                                 'class-conditional (num_classes=None)')
        elif y is None:
            raise ValueError('the model is class-conditional (num_classes='
                             f'{self.num_classes}): y is required')
        elif y.shape != (n,):
            raise ValueError(
                f'y must have shape ({n},), got {tuple(y.shape)}')

    # ------------------------------------------------------------------
    # forward
    def embed(self, timesteps: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """Timestep (+ class) embedding: ``(N,)``, ``(N,)`` -> ``(N, E)``."""
        emb = self.time_embed(timestep_embedding(timesteps,
                                                 self.model_channels))
        if y is not None:
            emb = emb + self.label_emb(y)
        return emb

    def forward(self, x: Tensor, timesteps: Tensor,
                y: Optional[Tensor] = None) -> Tensor:
        """Full U-Net output.

        Args:
            x: ``(N, in_channels, H, W)``, ``H, W`` multiples of
                :attr:`size_divisor`.
            timesteps: ``(N,)`` (integer or fractional) timesteps.
            y: ``(N,)`` int64 class labels, required iff class-conditional.

        Returns:
            ``(N, out_channels, H, W)``.
        """
        return self.forward_intermediates(
            x, timesteps, (self.out_index,), y=y)[self.out_index]

    def forward_intermediates(
            self, x: Tensor, timesteps: Tensor,
            blocks: Union[int, Iterable[int]], y: Optional[Tensor] = None,
            stop_early: bool = True,
            injections: Optional[Mapping[int, Tensor]] = None,
            checkpoint_fn: Optional[CheckpointFn] = None) -> dict[int, Tensor]:
        """Run the U-Net and return the outputs of the requested blocks.

        Blocks are numbered from 1 in execution order: ``1..len(input_blocks)``
        are the input blocks, ``len(input_blocks) + 1`` is the middle block and
        the rest up to :attr:`num_blocks` are output blocks. A block's feature
        is the output of the whole block (for output blocks: after their
        upsampler, if any); :meth:`block_specs` gives its channels and stride.
        :attr:`out_index` (``num_blocks + 1``) requests the final output
        (``out`` layer applied).

        Args:
            x: ``(N, in_channels, H, W)``, ``H, W`` multiples of
                :attr:`size_divisor`.
            timesteps: ``(N,)`` timesteps.
            blocks: block index or indices in ``1..out_index``.
            y: ``(N,)`` class labels, required iff class-conditional.
            stop_early: stop right after the deepest requested block; later
                blocks and the ``out`` layer are not computed. If False the
                whole network runs (only requested blocks are returned).
            injections: ``{block: tensor}`` with ``block`` in
                ``1..num_blocks``; the tensor (broadcastable to the block's
                output ``(N, C_b, H_b, W_b)`` without enlarging it) is cast to
                the output's dtype and added to the output before anything
                else uses it: the sum is what is passed to the next block,
                stored as the skip connection (input blocks) and returned as
                the feature.
            checkpoint_fn: if given, every block (not the final ``out``
                layer) is evaluated as ``checkpoint_fn(block, h, emb)`` instead
                of ``block(h, emb)``, where ``h`` is the block input
                ``(N, C, H_b, W_b)`` (for output blocks already concatenated
                with the skip) and ``emb`` the ``(N, E)`` embedding. For
                example ``lambda f, *a: torch.utils.checkpoint.checkpoint(
                f, *a, use_reentrant=False)``.

        Returns:
            ``{block: feature}`` for each requested block; feature ``b`` has
            shape ``(N, C_b, H / stride_b, W / stride_b)`` and the final output
            ``(N, out_channels, H, W)``.

        Raises:
            ValueError: bad block/injection index, wrong input channels, size
                not a multiple of :attr:`size_divisor`, missing or unexpected
                ``y``, or an injection of incompatible shape.
        """
        wanted = {blocks} if isinstance(blocks, int) else set(blocks)
        if not wanted:
            raise ValueError('blocks must name at least one block')
        for index in sorted(wanted):
            self._check_index(index, self.out_index, 'block')
            if index > self.num_kept and not (index == self.out_index and self.out is not None):
                raise ValueError(f'block {index} was pruned: blocks 1..{self.num_kept} are '
                                 'kept (prune_after)')
        injections = dict(injections or {})
        for index in sorted(injections):
            self._check_index(index, self.num_blocks, 'injection block')
        self._check_inputs(x, timesteps, y)
        last = max(wanted) if stop_early or self.out is None else self.out_index
        run_block = checkpoint_fn or _call_block

        emb = self.embed(timesteps, y)
        features: dict[int, Tensor] = {}
        skips: list[Tensor] = []
        h = x
        for index, kind, block in self._blocks():
            if index > last:
                break
            if kind == 'output':
                h = torch.cat([h, skips.pop()], dim=1)
            h = run_block(block, h, emb)
            if index in injections:
                h = self._inject(h, injections[index], index)
            if kind == 'input':
                skips.append(h)
            if index in wanted:
                features[index] = h
        if last == self.out_index:
            output = self.out(h)
            if self.out_index in wanted:
                features[self.out_index] = output
        return features

    @staticmethod
    def _inject(h: Tensor, delta: Tensor, index: int) -> Tensor:
        try:
            compatible = torch.broadcast_shapes(h.shape, delta.shape) == h.shape
        except RuntimeError:
            compatible = False
        if not compatible:
            raise ValueError(
                f'injection for block {index} has shape {tuple(delta.shape)}, '
                f'not broadcastable to the block output {tuple(h.shape)}')
        return h + delta.to(h.dtype)
