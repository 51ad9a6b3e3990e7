"""PCA of feature maps as RGB images: what a block "sees" at a timestep."""
import numpy as np
import torch
import torch.nn.functional as F


def pca_rgb(feature):
    """Project a ``(C, H, W)`` map on its first 3 principal components, scaled to [0, 1].

    Returns:
        np.ndarray: ``(H, W, 3)`` float32.
    """
    c, h, w = feature.shape
    x = feature.float().reshape(c, h * w).T
    x = x - x.mean(0)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    proj = x @ v[:3].T
    if proj.shape[1] < 3:
        proj = torch.cat([proj, proj.new_zeros(h * w, 3 - proj.shape[1])], 1)
    lo, hi = proj.min(0).values, proj.max(0).values
    proj = (proj - lo) / (hi - lo).clamp_min(1e-8)
    return proj.reshape(h, w, 3).numpy().astype(np.float32)


@torch.no_grad()
def feature_pca_grid(backbone, images, blocks, timesteps):
    """A grid image: one row per image, the image then one PCA map per (block, t).

    Args:
        backbone (ADMBackbone): feature extractor.
        images (Tensor): ``(B, 3, H, W)`` in [-1, 1].

    Returns:
        np.ndarray: ``(B * H, (1 + len(blocks) * len(timesteps)) * W, 3)`` uint8.
    """
    feats = backbone.intermediates(images, blocks=blocks, timesteps=timesteps)
    size = images.shape[-2:]
    rows = []
    for i in range(images.shape[0]):
        tiles = [((images[i].permute(1, 2, 0).cpu().numpy() + 1) / 2).clip(0, 1)]
        for b in blocks:
            for ti in range(len(timesteps)):
                rgb = torch.from_numpy(pca_rgb(feats[b][ti, i].cpu())).permute(2, 0, 1)
                tiles.append(F.interpolate(rgb[None], size=size, mode='nearest')[0]
                             .permute(1, 2, 0).numpy())
        rows.append(np.concatenate(tiles, 1))
    return (np.concatenate(rows, 0) * 255).round().astype(np.uint8)
