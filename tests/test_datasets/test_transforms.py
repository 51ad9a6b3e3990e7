"""BoxBicubicResizeEdge equals guided-diffusion's resizing done by hand with PIL, alone and
inside mmcv's RandomChoiceResize (the diffssl ImageNet training pipeline)."""
import numpy as np
import pytest
from PIL import Image

pytest.importorskip('mmpretrain')

import mmdiffssl  # noqa: E402,F401
from mmdiffssl.datasets.transforms import BoxBicubicResizeEdge  # noqa: E402


def photo(height, width, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    smooth = np.stack([np.sin(xx / 17.0), np.cos(yy / 23.0), np.sin((xx + yy) / 31.0)], -1)
    img = 127 + 90 * smooth + rng.normal(0, 20, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def by_hand(img, scale):
    """Halve with BOX while the short side >= 2 * scale, then BICUBIC to short side scale."""
    pil = Image.fromarray(img)
    sizes = [pil.size]
    while min(pil.size) >= 2 * scale:
        pil = pil.resize((pil.size[0] // 2, pil.size[1] // 2), resample=Image.BOX)
        sizes.append(pil.size)
    factor = scale / min(pil.size)
    pil = pil.resize((round(pil.size[0] * factor), round(pil.size[1] * factor)),
                     resample=Image.BICUBIC)
    return np.asarray(pil), sizes


@pytest.mark.parametrize('height, width, scale, halvings', [
    (700, 1100, 256, 1),    # 700 >= 512: one halving to 550 x 350, then bicubic
    (1100, 2300, 256, 2),   # 1100 -> 550 -> 275
    (300, 451, 256, 0),     # bicubic only
    (333, 500, 320, 0),
])
def test_matches_pil_by_hand(height, width, scale, halvings):
    img = photo(height, width)
    expected, sizes = by_hand(img, scale)
    assert len(sizes) - 1 == halvings
    results = BoxBicubicResizeEdge(scale=scale)(dict(img=img.copy()))
    assert min(results['img'].shape[:2]) == scale
    np.testing.assert_array_equal(results['img'], expected)
    assert results['img_shape'] == expected.shape[:2]
    # not the bilinear resize the configs used before
    bilinear = np.asarray(Image.fromarray(img).resize(expected.shape[1::-1], Image.BILINEAR))
    assert np.abs(bilinear.astype(int) - expected).max() > 0


def test_inside_random_choice_resize_and_bad_input():
    """Built by name from the diffssl configs' scope (mmpretrain), through mmcv's
    RandomChoiceResize, which builds the inner resize from its own registry."""
    import mmpretrain.utils
    from mmpretrain.registry import TRANSFORMS
    mmpretrain.utils.register_all_modules(init_default_scope=False)
    transform = TRANSFORMS.build(dict(type='RandomChoiceResize', scales=[260],
                                      resize_type='BoxBicubicResizeEdge'))
    assert type(transform.resize) is BoxBicubicResizeEdge
    img = photo(600, 800, seed=1)
    out = transform(dict(img=img.copy()))['img']
    np.testing.assert_array_equal(out, by_hand(img, 260)[0])
    with pytest.raises(ValueError, match='uint8'):
        BoxBicubicResizeEdge(256)(dict(img=img.astype(np.float32)))
    with pytest.raises(ValueError, match='scale=0'):
        BoxBicubicResizeEdge(0)(dict(img=img))


def test_imagenet_diffssl_pipelines_use_it():
    from mmengine.config import Config

    from conftest import ROOT
    cfg = Config.fromfile(f'{ROOT}/configs/_base_/datasets/imagenet_diffssl-256px.py')
    train, test = cfg.train_pipeline, cfg.test_pipeline
    assert train[1]['resize_type'] == 'BoxBicubicResizeEdge'
    assert train[1]['scales'] == list(range(256, 321))
    assert test[1] == dict(type='BoxBicubicResizeEdge', scale=256)
