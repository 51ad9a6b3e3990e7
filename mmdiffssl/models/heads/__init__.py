"""Classification heads on diffusion features (mmpretrain ``ClsHead`` subclasses).

Registered in mmengine's root registry when mmpretrain is installed (they subclass its
``ClsHead``); without mmpretrain this package registers nothing.
"""
import importlib.util

__all__ = []

if importlib.util.find_spec('mmpretrain') is not None:
    from .attention_heads import AttentionPoolHead, DifFormerHead  # noqa: F401
    from .pooled_heads import CNNHead, DiffusionClsHead, MLPHead, PooledLinearHead  # noqa: F401

    __all__ += ['AttentionPoolHead', 'CNNHead', 'DifFormerHead', 'DiffusionClsHead',
                'MLPHead', 'PooledLinearHead']
