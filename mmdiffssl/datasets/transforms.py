"""Data transforms (registered by name in mmengine's root TRANSFORMS: mmdiffssl.registry)."""
import numpy as np
from mmcv.transforms import BaseTransform


class GrayToRGB(BaseTransform):
    """Repeat a single-channel image to three channels.

    Required keys: ``img`` of shape ``(H, W)`` or ``(H, W, 1)``.
    Modified keys: ``img`` becomes ``(H, W, 3)``; three-channel images pass unchanged.
    """

    def transform(self, results):
        img = results['img']
        if img.ndim == 3 and img.shape[2] == 3:
            return results
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[..., 0]
        if img.ndim != 2:
            raise ValueError(f'GrayToRGB expects an (H, W) or (H, W, 1) image, got {img.shape}')
        results['img'] = np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2))
        return results


class BoxBicubicResizeEdge(BaseTransform):
    """Resize the shorter side to ``scale`` as guided-diffusion (ADM) and the diffssl authors
    prepare ImageNet: while the shorter side is at least ``2 * scale``, halve both sides
    (``size // 2``) with PIL's box filter; then resize with PIL's bicubic filter by
    ``scale / shorter side`` (each side rounded). Aspect ratio is kept.

    Random short sides (the authors' training crop draws one in [256, 320]) come from mmcv's
    ``RandomChoiceResize(scales=..., resize_type='BoxBicubicResizeEdge')``, which sets
    ``scale`` per image.

    Args:
        scale (int): target length of the shorter side.

    Required keys: ``img`` ``(H, W)`` or ``(H, W, C)`` uint8 (any channel order).
    Modified keys: ``img``, ``img_shape``; added: ``scale_factor`` ``(w'/W, h'/H)``.
    """

    def __init__(self, scale=256):
        self.scale = scale

    def transform(self, results):
        from PIL import Image
        scale = self.scale[0] if isinstance(self.scale, (tuple, list)) else self.scale
        if not (isinstance(scale, int) and scale > 0):
            raise ValueError(f'BoxBicubicResizeEdge scale={self.scale!r} is not a positive int')
        img = results['img']
        if img.dtype != np.uint8:
            raise ValueError(f'BoxBicubicResizeEdge expects a uint8 image, got {img.dtype}')
        height, width = img.shape[:2]
        pil = Image.fromarray(img)
        while min(pil.size) >= 2 * scale:
            pil = pil.resize(tuple(x // 2 for x in pil.size), resample=Image.BOX)
        factor = scale / min(pil.size)
        pil = pil.resize(tuple(round(x * factor) for x in pil.size), resample=Image.BICUBIC)
        out = np.asarray(pil)
        results['img'] = np.ascontiguousarray(out)
        results['img_shape'] = out.shape[:2]
        results['scale_factor'] = (out.shape[1] / width, out.shape[0] / height)
        return results

    def __repr__(self):
        return f'{type(self).__name__}(scale={self.scale})'
