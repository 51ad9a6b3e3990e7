"""Backbones: diffusion networks as feature pyramids (and raw pixels, the probe baseline).

Every diffusion family fills one contract, :class:`DiffusionBackbone` (block table,
resolver, shapes, cache key). ``SDBackbone``, ``SDXLBackbone``, ``DiffusersUNetBackbone`` and
the latent transformers (``DiTBackbone``, ``PixArtBackbone``) need the optional ``diffusers``
(``pip install .[sd]``); they import it when built.
"""
from .adm_backbone import ADMBackbone
from .base import BlockInfo, BlockTable, DiffusionBackbone, ShapeSpec
from .diffusers_unet_backbone import DiffusersBackbone, DiffusersUNetBackbone
from .dit_backbone import DiTBackbone
from .pixart_backbone import PixArtBackbone
from .pixel_backbone import PixelBackbone
from .sd_backbone import SDBackbone
from .sdxl_backbone import SDXLBackbone

__all__ = ['ADMBackbone', 'BlockInfo', 'BlockTable', 'DiffusersBackbone', 'DiffusionBackbone',
           'DiTBackbone', 'DiffusersUNetBackbone', 'PixArtBackbone', 'PixelBackbone',
           'SDBackbone', 'SDXLBackbone', 'ShapeSpec']
