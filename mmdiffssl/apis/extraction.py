"""Feature extraction over an image folder (behind ``tools/extract_features.py``)."""
import os
import os.path as osp

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile
from tqdm import tqdm

from .features import extract_features

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def list_images(image_dir):
    """Sorted paths of the images under ``image_dir`` (recursive)."""
    if not osp.isdir(image_dir):
        raise FileNotFoundError(f'image folder not found: {image_dir}')
    paths = sorted(osp.join(root, name) for root, _, names in os.walk(image_dir)
                   for name in names if name.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_SUFFIXES)}) under {image_dir}')
    return paths


class ImageReadError(OSError):
    """An image file that cannot be decoded; the message names it."""


def read_rgb(path):
    """The whole image decoded to RGB, or ImageReadError naming the file.

    Truncated files fail even where another library switched PIL's
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` on (it would pad the missing rows with grey).
    """
    strict = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as img:
            return img.convert('RGB')   # decodes every byte: a truncated file fails here
    except Exception as err:   # PIL raises OSError, SyntaxError, ValueError, ...
        raise ImageReadError(f"cannot read image '{path}' ({type(err).__name__}: {err})") \
            from err
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = strict


def load_image(path, size):
    """RGB uint8 ``(3, size, size)``: shorter side resized to ``size``, centre crop.

    Raises:
        ImageReadError: the file cannot be decoded (truncated, not an image); names it.
    """
    img = read_rgb(path)
    scale = size / min(img.size)
    img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))),
                     Image.BICUBIC)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def extract_folder(backbone, image_dir, out_dir, size=256, batch_size=16, pool=None, fmt='npy'):
    """Run ``backbone`` over every image of ``image_dir`` and save the features.

    Image ``i`` (in sorted path order) uses noise key ``i`` in 'fixed' mode, so a row's
    features do not depend on the batch it was computed in.

    An image that cannot be decoded (e.g. a truncated JPEG) stops the extraction before
    anything is written, with an :class:`ImageReadError` naming the file.

    Returns:
        list[str]: the files written.
    """
    if fmt not in ('npy', 'safetensors'):
        raise ValueError(f"format '{fmt}' is not 'npy' or 'safetensors'")
    paths = list_images(image_dir)
    device = next(backbone.parameters()).device
    chunks = {b: [] for b in backbone.blocks}
    for start in tqdm(range(0, len(paths), batch_size), desc='extracting', unit='batch'):
        batch_paths = paths[start:start + batch_size]
        try:
            images = torch.stack([load_image(p, size) for p in batch_paths]).to(device)
        except ImageReadError as err:
            raise ImageReadError(f'{err}; extraction of {len(paths)} images under '
                                 f"'{image_dir}' stopped, nothing written to '{out_dir}': "
                                 'fix or remove that file') from None
        keys = torch.arange(start, start + len(batch_paths), device=device)
        for block, feat in extract_features(backbone, images, keys=keys).items():
            if pool:
                feat = F.adaptive_avg_pool2d(feat, pool)
            chunks[block].append(feat.half().cpu())
    os.makedirs(out_dir, exist_ok=True)
    arrays = {f'block{b}': torch.cat(c) for b, c in chunks.items()}
    written = []
    if fmt == 'npy':
        for name, tensor in arrays.items():
            written.append(osp.join(out_dir, f'{name}.npy'))
            np.save(written[-1], tensor.numpy())
    else:
        from safetensors.torch import save_file
        written.append(osp.join(out_dir, 'features.safetensors'))
        save_file(arrays, written[-1])
    written.append(osp.join(out_dir, 'images.txt'))
    with open(written[-1], 'w') as f:
        f.write('\n'.join(paths) + '\n')
    return written
