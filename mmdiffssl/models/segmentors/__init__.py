"""Segmentors on diffusion backbones: ``DiffEncoderDecoder`` (registered as
``'DiffEncoderDecoder'``).

Registered in mmengine's root ``MODELS`` when mmsegmentation is installed, so configs of
any scope build it by ``type=``. The name is a builder that imports mmseg only when a model
is built: importing this package imports no mmseg.
"""
import importlib.util

from mmengine.registry import MODELS

__all__ = []

if importlib.util.find_spec('mmseg') is not None:

    @MODELS.register_module(name='DiffEncoderDecoder')
    def build_diff_encoder_decoder(**kwargs):
        """``DiffEncoderDecoder(**kwargs)`` (:class:`.encoder_decoder.DiffEncoderDecoder`)."""
        from .encoder_decoder import DiffEncoderDecoder
        return DiffEncoderDecoder(**kwargs)

    __all__ += ['build_diff_encoder_decoder']
