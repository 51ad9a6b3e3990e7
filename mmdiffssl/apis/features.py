"""Research API: build a diffusion backbone and extract features outside configs.

    >>> from mmdiffssl.apis import build_backbone, extract_features
    >>> bb = build_backbone('adm-256-uncond', checkpoint='256x256_diffusion_uncond.pt',
    ...                     blocks=(24,), timesteps=(150,))
    >>> feats = extract_features(bb, images_uint8)   # images (B, 3, H, W) uint8 RGB
    >>> feats[24].shape                               # (B, 1024, H/16, W/16)
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
def extract_features(backbone, images, keys=None):
    """Features of ``images`` at the backbone's blocks, timesteps fused as configured.

    Args:
        backbone (ADMBackbone): the feature extractor.
        images (Tensor): ``(B, 3, H, W)``, uint8 RGB or float in [-1, 1], on the backbone's
            device.
        keys (Tensor, optional): ``(B,)`` image keys for 'fixed' noise.

    Returns:
        dict[int, Tensor]: block -> ``(B, C, H_b, W_b)`` float32.
    """
    feats = backbone.intermediates(to_model_range(images), keys=keys)
    return {b: backbone.fuse(f) for b, f in feats.items()}
