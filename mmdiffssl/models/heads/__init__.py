"""Classification heads on diffusion features (mmpretrain ``ClsHead`` subclasses, so they
need mmpretrain; imported on first access)."""
from mmdiffssl.utils.lazy import lazy_attributes

_EXPORTS = {'AttentionPoolHead': 'attention_heads', 'DifFormerHead': 'attention_heads',
            'CNNHead': 'pooled_heads', 'DiffusionClsHead': 'pooled_heads',
            'MLPHead': 'pooled_heads', 'PooledLinearHead': 'pooled_heads'}
__all__ = list(_EXPORTS)
__getattr__ = lazy_attributes(__name__, _EXPORTS)
