"""Building blocks of the diffusion-feature heads (plain torch, no mmpretrain).

Notation: ``B`` batch, ``T`` timesteps, ``C`` channels, ``H, W`` feature size, ``N`` tokens,
``D`` token width.
"""
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def as_tuple(value, length=None, name='value'):
    """``5`` -> ``(5,)`` (or ``(5,) * length``); a sequence -> a tuple, length-checked."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = tuple(value)
    else:
        value = (value, ) * (length or 1)
    if length is not None and len(value) != length:
        raise ValueError(f'{name} has {len(value)} entries, expected {length} '
                         '(one per selected feature)')
    return value


def as_size(size):
    """``16`` -> ``(16, 16)``; ``(h, w)`` -> ``(h, w)``."""
    if isinstance(size, Sequence) and not isinstance(size, str):
        if len(size) != 2:
            raise ValueError(f'a feature size is an int or (h, w), got {size!r}')
        return int(size[0]), int(size[1])
    return int(size), int(size)


def select_features(feats, feat_index):
    """Pick the head's inputs out of the backbone's tuple.

    Args:
        feats (tuple[Tensor]): the backbone's outputs, each ``(B, C_i, H_i, W_i)``.
        feat_index (tuple[int]): indices into ``feats`` (negative counts from the end).

    Returns:
        list[Tensor]: the selected features, in ``feat_index`` order.
    """
    if torch.is_tensor(feats):
        feats = (feats, )
    out = []
    for i in feat_index:
        if not -len(feats) <= i < len(feats):
            raise IndexError(f'feat_index {i} is out of range for a backbone with '
                             f'{len(feats)} outputs')
        out.append(feats[i])
    return out


def check_channels(feat, expected, what):
    if feat.dim() != 4:
        raise ValueError(f'{what}: expected a (B, C, H, W) feature map, got shape '
                         f'{tuple(feat.shape)}')
    if feat.shape[1] != expected:
        raise ValueError(f'{what}: the feature has {feat.shape[1]} channels but the head '
                         f'was built for in_channels={expected}; set in_channels to the '
                         "backbone's out_channels")


def resize_to(x, size):
    """Resize ``(B, C, H, W)`` to ``size``: area-average when shrinking, bilinear else."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


def make_activation(act):
    acts = {'relu': nn.ReLU, 'gelu': nn.GELU, 'silu': nn.SiLU}
    if act not in acts:
        raise ValueError(f"act='{act}' is not one of {tuple(acts)}")
    return acts[act]()


class SelfAttention(nn.Module):
    """Multi-head self-attention on ``(B, N, D)`` tokens (ViT style, fused qkv)."""

    def __init__(self, dims, num_heads, qkv_bias=False, drop=0.0):
        super().__init__()
        if dims % num_heads:
            raise ValueError(f'embed_dims={dims} is not divisible by num_heads={num_heads}')
        self.num_heads = num_heads
        self.qkv = nn.Linear(dims, 3 * dims, bias=qkv_bias)
        self.proj = nn.Linear(dims, dims)
        self.drop = drop

    def forward(self, x):
        """``(B, N, D)`` -> ``(B, N, D)``."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(
            2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v,
                                           dropout_p=self.drop if self.training else 0.0)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class TransformerBlock(nn.Module):
    """Pre-norm ViT block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))`` (GELU MLP).

    Shapes: ``(B, N, D)`` -> ``(B, N, D)``.
    """

    def __init__(self, dims, num_heads, mlp_ratio=4.0, qkv_bias=False, drop=0.0):
        super().__init__()
        hidden = int(dims * mlp_ratio)
        self.norm1 = nn.LayerNorm(dims)
        self.attn = SelfAttention(dims, num_heads, qkv_bias, drop)
        self.norm2 = nn.LayerNorm(dims)
        self.mlp = nn.Sequential(nn.Linear(dims, hidden), nn.GELU(), nn.Dropout(drop),
                                 nn.Linear(hidden, dims), nn.Dropout(drop))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TokenPreLayer(nn.Module):
    """The paper's per-block pre-layer: pool, LayerNorm over (C, h, w), 1x1 conv, tokens.

    Args:
        in_channels (int): channels ``C`` of one timestep's feature.
        in_size (int | tuple[int, int]): the feature's spatial size ``(H, W)``.
        pool_size (int): pooled size is ``min(H, pool_size) x min(W, pool_size)``.
        embed_dims (int): token width ``D``.

    Shapes: ``(B, C, H, W)`` -> ``(B, h * w, D)``.
    """

    def __init__(self, in_channels, in_size, pool_size, embed_dims):
        super().__init__()
        height, width = as_size(in_size)
        self.out_size = (min(height, pool_size), min(width, pool_size))
        self.in_size = (height, width)
        self.norm = nn.LayerNorm([in_channels, *self.out_size])
        self.proj = nn.Conv2d(in_channels, embed_dims, 1)

    def forward(self, x):
        if x.shape[-2] < self.out_size[0] or x.shape[-1] < self.out_size[1]:
            raise ValueError(f'feature map {tuple(x.shape[-2:])} is smaller than the pooled '
                             f'size {self.out_size} the head was built for (in_sizes='
                             f'{self.in_size}); set in_sizes for this input size')
        x = self.norm(F.adaptive_avg_pool2d(x, self.out_size))
        return self.proj(x).flatten(2).transpose(1, 2)
