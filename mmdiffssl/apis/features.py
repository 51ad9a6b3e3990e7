"""Research API: build a diffusion backbone and extract features outside configs.

    >>> from mmdiffssl.apis import build_backbone, extract_features
    >>> bb = build_backbone('adm-256-uncond', checkpoint='256x256_diffusion_uncond.pt',
    ...                     blocks=(24,), timesteps=(150,))
    >>> feats = extract_features(bb, images_uint8)   # images (B, 3, H, W) uint8 RGB
    >>> feats[24].shape                               # (B, 1024, H/16, W/16)

For a PixArt backbone, ``extract_features(bb, images, resolution_binning=True)`` first
resizes the batch to its nearest trained aspect-ratio bin (:mod:`.binning`; off by default).
"""
import torch

from mmdiffssl.models.backbones import ADMBackbone


def build_backbone(arch, checkpoint=None, **kwargs):
    """An :class:`ADMBackbone` in eval mode; ``kwargs`` are its constructor arguments."""
    return ADMBackbone(arch=arch, checkpoint=checkpoint, **kwargs).eval()


def to_model_range(images):
    """uint8 RGB ``(B, 3, H, W)`` in [0, 255] -> float in [-1, 1]; float input passes as is."""
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    return images


@torch.no_grad()
def extract_features(backbone, images, keys=None, resolution_binning=False):
    """Features of ``images`` at the backbone's blocks, timesteps fused as configured.

    Args:
        backbone (DiffusionBackbone): the feature extractor.
        images (Tensor): ``(B, 3, H, W)``, uint8 RGB or float in [-1, 1], on the backbone's
            device.
        keys (Tensor, optional): ``(B,)`` image keys for 'fixed' noise.
        resolution_binning (bool): PixArt backbones only: resize the batch to the trained
            aspect-ratio bin nearest to ``H / W`` at the model's native resolution
            (scaled to cover it, centre-cropped; :mod:`.binning`) before extraction, so
            the features are those of the binned size. Off by default (the input size is
            kept; positional embeddings are interpolated).

    Returns:
        dict[int, Tensor]: block -> ``(B, C, H_b, W_b)`` float32 (of the binned size with
        ``resolution_binning``).
    """
    images = to_model_range(images)
    if resolution_binning:
        if getattr(backbone, 'family', None) != 'PixArt':
            raise ValueError('resolution_binning is for PixArt backbones (its trained '
                             f'aspect-ratio bins); this backbone is '
                             f'{getattr(backbone, "family", type(backbone).__name__)}')
        from .binning import resize_to_bin
        images = resize_to_bin(images.float(), backbone.native_resolution)
    feats = backbone.intermediates(images, keys=keys)
    return {b: backbone.fuse(f) for b, f in feats.items()}
