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
