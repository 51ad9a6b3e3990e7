"""PixArt's resolution binning for the extraction API: an input is resized to the trained
aspect-ratio bin nearest to its own before extraction (off by default: the dense configs
rely on the interpolated positional embeddings instead).

PixArt-α (native 256, 512 or 1024 px) and PixArt-Σ were trained on images bucketed by aspect
ratio. The bins (diffusers' ``ASPECT_RATIO_{256,512,1024,2048}_BIN`` tables of the PixArt
pipelines) are, in units of 1/16 of the native side (64 px at 1024), the ``(h, w)`` pairs
below; a bin's name is ``round(h / w, 2)``. The 256, 512 and 1024 tables are one table
scaled; the 2048 table (PixArt-Σ 2K) has seven more extreme bins. An image of height ``H`` and
width ``W`` goes to the bin whose name is nearest to ``H / W`` (the first, in ascending name
order, on a tie), as diffusers' ``classify_height_width_bin`` chooses.
"""
import torch.nn.functional as F

#: (h, w) of the bins in sixteenths of the native side: portrait, square, landscape.
_BINS = ((8, 32), (8, 29), (9, 28), (9, 27), (9, 26), (10, 25), (10, 24), (11, 23), (11, 22),
         (11, 21), (12, 21), (12, 20), (13, 19), (13, 18), (14, 18), (14, 17), (15, 17),
         (15, 16), (16, 16), (16, 15), (17, 15), (17, 14), (18, 14), (18, 13), (19, 13),
         (20, 12), (21, 12), (22, 11), (23, 11), (24, 10), (25, 10), (27, 9), (32, 8))
#: the 2048 table's bins beyond the others.
_BINS_2048_EXTRA = ((8, 31), (8, 30), (26, 9), (28, 9), (29, 8), (30, 8), (31, 8))
#: native resolution (px) -> the bins' (h, w) in sixteenths of it.
ASPECT_RATIO_BINS = {256: _BINS, 512: _BINS, 1024: _BINS, 2048: _BINS + _BINS_2048_EXTRA}


def aspect_ratio_bins(native):
    """``{name: (height, width)}`` in pixels of the bins of a PixArt model trained at
    ``native`` px (256, 512, 1024 or 2048), in ascending name order."""
    if native not in ASPECT_RATIO_BINS:
        raise ValueError(f'resolution binning needs a PixArt model of native resolution '
                         f'{tuple(ASPECT_RATIO_BINS)} px, this one is {native!r} px')
    unit = native // 16
    bins = sorted(ASPECT_RATIO_BINS[native], key=lambda hw: hw[0] / hw[1])
    return {round(h / w, 2): (h * unit, w * unit) for h, w in bins}


def nearest_bin(height, width, native):
    """``(height, width)`` in pixels of the bin nearest to the aspect ratio ``height /
    width`` (see the module docstring)."""
    bins = aspect_ratio_bins(native)
    ratio = height / width
    return bins[min(bins, key=lambda name: abs(name - ratio))]


def resize_to_bin(images, native):
    """Images ``(B, 3, H, W)`` (float) scaled to cover their nearest bin (bilinear,
    antialiased), then centre-cropped to it: ``(B, 3, h_bin, w_bin)``."""
    height, width = images.shape[-2:]
    new_h, new_w = nearest_bin(height, width, native)
    if (height, width) == (new_h, new_w):
        return images
    scale = max(new_h / height, new_w / width)
    size = (max(new_h, round(height * scale)), max(new_w, round(width * scale)))
    images = F.interpolate(images, size=size, mode='bilinear', align_corners=False,
                           antialias=True)
    top, left = (size[0] - new_h) // 2, (size[1] - new_w) // 2
    return images[..., top:top + new_h, left:left + new_w]


__all__ = ['ASPECT_RATIO_BINS', 'aspect_ratio_bins', 'nearest_bin', 'resize_to_bin']
