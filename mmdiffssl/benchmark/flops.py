"""Floating-point operations of one forward, counted by ``torch.utils.flop_counter``.

Convention: one multiply-add is 2 FLOPs (``FlopCounterMode``'s). Counted are convolutions,
matrix products (``mm``/``addmm``/``bmm``/``baddbmm``) and fused attention; element-wise
work (GroupNorm, SiLU, softmax, additions) is not, which for ADM U-Nets is far below 1%.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from mmdiffssl.models.unets import adm_flags_from, build_adm_unet


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def extra_flop_formulas() -> dict:
    """Formulas ``FlopCounterMode`` lacks: the CPU (and 'overrideable') fused attention
    kernels, which ``F.scaled_dot_product_attention`` uses on CPU; without them attention
    counts 0 there."""
    aten = torch.ops.aten
    names = ('_scaled_dot_product_flash_attention_for_cpu',
             '_scaled_dot_product_fused_attention_overrideable')
    return {getattr(aten, name): _sdpa_flops for name in names if hasattr(aten, name)}


def count_flops(fn: Callable, *args, **kwargs) -> tuple[Any, int, dict[str, int]]:
    """Run ``fn(*args, **kwargs)`` once and count its FLOPs.

    Run eager code: compiled (inductor) kernels bypass the counter.

    Returns:
        ``(result, total FLOPs, {op name: FLOPs})``.
    """
    with FlopCounterMode(display=False, custom_mapping=extra_flop_formulas()) as counter:
        result = fn(*args, **kwargs)
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts().get('Global', {}).items()}
    return result, int(counter.get_total_flops()), per_op


def adm_flops(arch, size: Optional[int] = None, blocks: Optional[Sequence[int]] = None,
              batch: int = 1) -> int:
    """FLOPs of one ADM U-Net forward, counted on the meta device (no memory, no compute).

    Args:
        arch: anything :func:`~mmdiffssl.models.unets.adm_flags_from` accepts.
        size: input height and width; default the arch's ``image_size``.
        blocks: stop after the deepest of these blocks (as ``ADMBackbone`` does); None for
            the full forward (all blocks and the ``out`` layer).
        batch: images per forward.

    Example: ``adm_flops('adm-256-uncond')`` is about 2 x 1120 GMACs,
    ``adm_flops('adm-256-uncond', blocks=(24,))`` about 2 x 320 GMACs.
    """
    flags = adm_flags_from(arch)
    size = size or flags['image_size']
    with torch.device('meta'):
        unet = build_adm_unet(flags)
        x = torch.zeros(batch, 3, size, size)
        t = torch.zeros(batch, dtype=torch.long)
        y = torch.zeros(batch, dtype=torch.long) if unet.num_classes else None
    wanted = (unet.out_index, ) if blocks is None else tuple(blocks)
    _, total, _ = count_flops(unet.forward_intermediates, x, t, wanted, y=y, stop_early=True)
    return total
