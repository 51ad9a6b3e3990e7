"""Backbones: diffusion U-Nets as feature pyramids (and raw pixels, the probe baseline).

``SDBackbone`` and ``DiffusersUNetBackbone`` need the optional ``diffusers`` (``pip install
.[sd]``); they import it when built, so importing this package does not need it.
"""
from .adm_backbone import ADMBackbone, ShapeSpec, pyramid_blocks
from .base import DiffusionBackbone
from .diffusers_unet_backbone import DiffusersUNetBackbone
from .pixel_backbone import PixelBackbone
from .sd_backbone import SDBackbone

__all__ = ['ADMBackbone', 'DiffusionBackbone', 'DiffusersUNetBackbone', 'PixelBackbone',
           'SDBackbone', 'ShapeSpec', 'pyramid_blocks']
