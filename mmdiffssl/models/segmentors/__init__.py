"""Segmentors on diffusion backbones: ``DiffEncoderDecoder`` (:mod:`.encoder_decoder`, needs
mmsegmentation).

Found by ``type='DiffEncoderDecoder'`` from configs of any scope (:mod:`mmdiffssl.registry`);
importing this package imports no mmseg.
"""
