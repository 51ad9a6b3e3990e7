"""PixArt resolution binning in the extraction API (mmdiffssl/apis/binning.py and
extract_features(resolution_binning=...)): the bins and the choice equal diffusers' PixArt
pipelines', the features come at the binned size, and binning is off by default."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('diffusers')

from mmdiffssl.apis import extract_features  # noqa: E402
from mmdiffssl.apis.binning import aspect_ratio_bins, nearest_bin, resize_to_bin  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')


def diffusers_tables():
    from diffusers.pipelines.pixart_alpha.pipeline_pixart_alpha import (
        ASPECT_RATIO_256_BIN, ASPECT_RATIO_512_BIN, ASPECT_RATIO_1024_BIN)
    from diffusers.pipelines.pixart_alpha.pipeline_pixart_sigma import ASPECT_RATIO_2048_BIN
    return {256: ASPECT_RATIO_256_BIN, 512: ASPECT_RATIO_512_BIN, 1024: ASPECT_RATIO_1024_BIN,
            2048: ASPECT_RATIO_2048_BIN}


@pytest.mark.parametrize('native', [256, 512, 1024, 2048])
def test_bins_and_choice_equal_the_diffusers_pipeline(native):
    from diffusers.image_processor import PixArtImageProcessor
    table = diffusers_tables()[native]
    ours = aspect_ratio_bins(native)
    assert {float(k): tuple(int(v) for v in hw) for k, hw in table.items()} == ours
    # every size from 1:5 to 5:1 (ties between two bins' names included) picks diffusers' bin
    for height in range(64, 1025, 8):
        for width in (192, 320, 512, 1000):
            expected = PixArtImageProcessor.classify_height_width_bin(height, width, table)
            assert nearest_bin(height, width, native) == expected, (height, width)


def test_nearest_bin_examples_and_bad_resolution():
    assert nearest_bin(480, 640, 1024) == (832, 1152)   # 0.75: a tie of 0.72 and 0.78
    assert nearest_bin(640, 480, 512) == (576, 448)     # 1.33 -> 1.29
    assert nearest_bin(100, 100, 256) == (256, 256)
    assert nearest_bin(260, 1000, 2048) == (1024, 3968)  # 0.26: a bin of Σ 2K only
    assert nearest_bin(260, 1000, 1024) == (512, 2048)   # 0.25 at 1024
    with pytest.raises(ValueError, match=r'native resolution \(256, 512, 1024, 2048\) px, '
                       r'this one is 64 px'):
        nearest_bin(64, 64, 64)


def test_resize_covers_then_centre_crops():
    x = torch.arange(2 * 3 * 60 * 100, dtype=torch.float32).reshape(2, 3, 60, 100)
    out = resize_to_bin(x, 256)   # 0.6 -> the (192, 320) bin: scale 3.2, exactly covering
    assert out.shape == (2, 3, 192, 320)
    expected = F.interpolate(x, size=(192, 320), mode='bilinear', align_corners=False,
                             antialias=True)
    assert torch.equal(out, expected)
    wide = resize_to_bin(torch.rand(1, 3, 64, 128), 256)   # 0.5 -> (176, 352): scale 2.75
    assert wide.shape == (1, 3, 176, 352)
    assert resize_to_bin(x[..., :50, :50], 256).shape[-2:] == (256, 256)


@pytest.fixture(scope='module')
def pixart_256(tmp_path_factory):
    """A tiny random PixArt of native resolution 256 (sample_size 32, size conditions on)."""
    from helpers.sd_tiny import TINY_VAE
    from helpers.transformer_tiny import TINY_PIXART, write_text_file
    from mmdiffssl.models.backbones import PixArtBackbone
    text = str(tmp_path_factory.mktemp('pixart') / 'text.pt')
    write_text_file(text)
    return PixArtBackbone(transformer_config=dict(TINY_PIXART, sample_size=32),
                          vae_config=TINY_VAE, text=dict(type='file', path=text),
                          blocks=(2, ), timesteps=(50, ), noise='none').eval()


def test_extraction_binning_on_and_off(pixart_256):
    assert pixart_256.native_resolution == 256
    images = torch.randint(0, 256, (1, 3, 96, 160), dtype=torch.uint8)   # 0.6
    off = extract_features(pixart_256, images)
    assert off[2].shape == (1, 24, 96 // 16, 160 // 16)   # default: the input size kept
    on = extract_features(pixart_256, images, resolution_binning=True)
    assert on[2].shape == (1, 24, 192 // 16, 320 // 16)   # the (192, 320) bin
    binned = resize_to_bin(images.float() / 127.5 - 1, 256)
    with torch.no_grad():
        direct = pixart_256.fuse(pixart_256.intermediates(binned)[2])
    assert torch.allclose(on[2], direct)


def test_binning_refused_for_other_families():
    from helpers.sd_tiny import TINY_VAE
    from helpers.transformer_tiny import TINY_DIT
    from mmdiffssl.models.backbones import DiTBackbone
    dit = DiTBackbone(transformer_config=TINY_DIT, vae_config=TINY_VAE, blocks=(1, )).eval()
    with pytest.raises(ValueError, match='resolution_binning is for PixArt backbones.*is DiT'):
        extract_features(dit, torch.zeros(1, 3, 64, 64, dtype=torch.uint8),
                         resolution_binning=True)
