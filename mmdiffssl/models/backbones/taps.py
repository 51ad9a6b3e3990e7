"""Taps: tensors inside a backbone's blocks (any submodule, or an attention layer's q, k, v
and map) returned as outputs next to the blocks.

A tap is written ``'<module path>'`` or ``'<module path>:<part>'``, the path relative to the
network (``BlockInfo.name`` is such a path), e.g. ``'middle_block.2.out_layers.3'`` (ADM) or
``'mid_block.resnets.1.conv2'`` (diffusers), and for an attention layer
``'middle_block.1:q'``, ``':k'``, ``':v'`` or ``':attn'``.

What a tap returns, per image and timestep (``h, w`` = the map size of the tapped tensor):

- a module: its output; a ``(N, C, h, w)`` map as is, a ``(N, h * w, C)`` token tensor as
  ``(N, C, h, w)`` (diffusers' transformer layers), the first element of a tuple;
- ``:q`` / ``:k`` / ``:v``: the attention layer's projected queries, keys or values, all
  heads, ``(N, heads * d, h, w)`` (self-attention keys and values only: a cross-attention
  layer's keys and values are over text tokens, not positions);
- ``:attn``: the attention probabilities ``softmax(q k^T / sqrt(d))`` computed explicitly
  in fp32 (the fused attention of the forward never materialises them), as
  ``(N, heads * T_k, h, w)``: for each query position, its distribution over the T_k keys
  of every head (``T_k = h * w`` for self-attention, the text length for cross-attention).
  Memory: ``heads * T_k * h * w`` floats per image and timestep; Stable Diffusion's
  64 x 64-latent self-attention is 4096 x 4096 per head per image (64 MiB in fp32), so tap
  maps of the coarse levels or of one head's worth of images at a time.

The run stops after the block that holds the deepest tap; taps add forward hooks for that
run only, and on a frozen backbone they build no autograd graph (the hooks see tensors
computed without one). Channels and strides of taps come from a shape-only run
(``FakeTensorMode``) at the backbone's native resolution: for ``:attn`` of self-attention
the channels depend on the input size (``heads * h * w``).
"""
import contextlib
from dataclasses import dataclass

import torch

TAP_PARTS = ('q', 'k', 'v', 'attn')


@dataclass(frozen=True)
class Tap:
    """One resolved tap.

    Attributes:
        name: what the user wrote, the tap's key in outputs (``'middle_block.1:attn'``).
        module: module path inside the network.
        part: None for a module's output, else one of :data:`TAP_PARTS`.
        block: the number of the block holding the module (the run goes at least that far).
        stride: stride of the holding block, used to fold token tensors into maps.
    """
    name: str
    module: str
    part: str
    block: int
    stride: int


def resolve_taps(taps, table, network, attention_kind):
    """Validated :class:`Tap` objects.

    Args:
        taps (str | Sequence[str] | None): what the user passed.
        table (BlockTable): the backbone's block table (of the whole network).
        network (nn.Module): the whole (unpruned) network.
        attention_kind (callable): ``module -> 'self' | 'cross' | None`` (None: not an
            attention layer the family can split into q, k, v).

    Raises:
        ValueError: naming the bad tap and the valid module paths (of its block, when the
            path starts with a block's name; else the blocks).
    """
    if taps is None:
        return ()
    if isinstance(taps, str):
        taps = (taps, )
    out = []
    for tap in taps:
        if not isinstance(tap, str):
            raise ValueError(f'tap {tap!r} is not a string: give module paths such as '
                             f"'{table[-1].name}.0' or '<attention layer>:attn'")
        path, _, part = tap.partition(':')
        row = next((r for r in sorted(table, key=lambda r: -len(r.name))
                    if path == r.name or path.startswith(r.name + '.')), None)
        modules = dict(network.named_modules())
        if row is None or path not in modules:
            where = (f"valid module paths in block {row.index} ({row.name}): "
                     f"{', '.join(tappable(network, row))}" if row is not None else
                     f"tap paths start with a block's module name: "
                     f"{', '.join(r.name for r in table)}")
            raise ValueError(f'tap {tap!r}: no module {path!r} in this network; {where} '
                             '(tools/print_blocks.py --taps BLOCK lists them)')
        if part:
            kind = attention_kind(modules[path])
            if part not in TAP_PARTS:
                raise ValueError(f'tap {tap!r}: part {part!r} is not one of {TAP_PARTS}')
            if kind is None:
                raise ValueError(f'tap {tap!r}: {path} ({type(modules[path]).__name__}) is '
                                 f"not an attention layer; ':{part}' needs one")
            if kind == 'cross' and part in ('k', 'v'):
                raise ValueError(f"tap {tap!r}: a cross-attention layer's keys and values are "
                                 "over text tokens, not positions: tap ':q' or ':attn'")
        out.append(Tap(tap, path, part or None, row.index, row.stride))
    if len({t.name for t in out}) != len(out):
        raise ValueError(f'taps {tuple(taps)} has duplicates')
    return tuple(out)


def tappable(network, row):
    """Module paths inside a block (relative to the network), in definition order."""
    block = network.get_submodule(row.name)
    return [row.name + ('.' + name if name else '') for name, _ in block.named_modules()]


def _as_map(value, height, width):
    """A hooked tensor as ``(N, C, h, w)``."""
    if isinstance(value, (tuple, list)):
        value = value[0]
    value = getattr(value, 'sample', value)
    if value.dim() == 4:
        return value
    if value.dim() == 3 and value.shape[1] == height * width:
        return value.transpose(1, 2).unflatten(-1, (height, width))
    raise ValueError(f'the tapped tensor has shape {tuple(value.shape)}: not a map nor '
                     f'{height * width} tokens of a {height}x{width} map')


def attention_output(part, q, k, v, scale, height, width):
    """A ``q``/``k``/``v``/``attn`` tap from per-head ``(N, heads, T, d)`` tensors."""
    if part == 'attn':
        probs = (q.float() @ k.float().transpose(-1, -2) * scale).softmax(-1)
        return probs.permute(0, 1, 3, 2).flatten(1, 2).unflatten(-1, (height, width))
    tensor = dict(q=q, k=k, v=v)[part]
    return tensor.permute(0, 1, 3, 2).flatten(1, 2).unflatten(-1, (height, width))


@contextlib.contextmanager
def tap_hooks(network, taps, image_size, attention_parts, store):
    """Store each tap's tensor in ``store`` (name -> ``(N, C, h, w)``) while the block runs.

    Args:
        network (nn.Module): the network.
        taps (Sequence[Tap]): the taps.
        image_size (tuple[int, int]): the backbone input's ``(H, W)``.
        attention_parts (callable): ``(module, args, kwargs) -> (q, k, v, scale)`` with
            per-head ``(N, heads, T, d)`` tensors, from the layer's inputs.
        store (dict): filled in place.
    """
    handles = []
    for tap in taps:
        module = network.get_submodule(tap.module)
        height, width = image_size[0] // tap.stride, image_size[1] // tap.stride
        if tap.part is None:
            def hook(mod, args, out, tap=tap, h=height, w=width):
                store[tap.name] = _as_map(out, h, w)
            handles.append(module.register_forward_hook(hook))
        else:
            def pre_hook(mod, args, kwargs, tap=tap, h=height, w=width):
                q, k, v, scale = attention_parts(mod, args, kwargs)
                store[tap.name] = attention_output(tap.part, q, k, v, scale, h, w)
            handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()
