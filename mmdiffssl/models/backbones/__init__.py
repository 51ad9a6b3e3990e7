"""Backbones: diffusion U-Nets as feature pyramids."""
from .adm_backbone import ADMBackbone, ShapeSpec, pyramid_blocks

__all__ = ['ADMBackbone', 'ShapeSpec', 'pyramid_blocks']
