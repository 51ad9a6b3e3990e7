"""Pixels outside [-1, 1] (e.g. [0, 255] floats) are refused on the first batch, naming the
range seen; later batches cost no host sync."""
import pytest
import torch

from mmdiffssl.models.input_range import check_pixel_range, check_pixel_range_once

TINY = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult='1,2',
            attention_resolutions='8', num_head_channels=16)


def pixels(low, high, shape=(2, 3, 8, 8)):
    x = torch.linspace(low, high, torch.Size(shape).numel()).view(shape)
    return x[torch.randperm(x.shape[0])]


def test_range_checks():
    check_pixel_range(pixels(-1, 1), 'test')
    check_pixel_range(pixels(-1.3, 1.4), 'test')   # interpolation overshoot
    with pytest.raises(ValueError, match=r'test: input pixels span \[0, 255\]; expected '
                                         r'\[-1, 1\].*looks like \[0, 255\]'):
        check_pixel_range(pixels(0, 255), 'test')
    with pytest.raises(ValueError, match=r'span \[-1, 1.6\]'):
        check_pixel_range(pixels(-1, 1.6), 'test')
    with pytest.raises(ValueError, match=r'span \[nan, nan\]'):
        check_pixel_range(torch.full((1, 3, 2, 2), float('nan')), 'test')
    with pytest.raises(ValueError, match='torch.uint8'):
        check_pixel_range(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), 'test')
    check_pixel_range(torch.empty(0, 3, 2, 2), 'test')   # nothing to see
    check_pixel_range(torch.empty(2, 3, 2, 2, device='meta'), 'test')


def test_only_the_first_batch_is_checked(monkeypatch):
    class Owner:
        pass

    owner, calls = Owner(), []
    real = torch.aminmax
    monkeypatch.setattr(torch, 'aminmax', lambda x: calls.append(1) or real(x))
    with pytest.raises(ValueError, match='Owner: input pixels span'):
        check_pixel_range_once(owner, pixels(0, 255))
    check_pixel_range_once(owner, pixels(-1, 1))
    check_pixel_range_once(owner, pixels(0, 255))   # not looked at: no sync
    assert len(calls) == 2 and owner._pixel_range_checked


@pytest.mark.parametrize('normalise', [False, True])
def test_ddpm_pretrainer_refuses_unnormalised_pixels(normalise):
    from mmengine.registry import init_default_scope
    from mmpretrain.structures import DataSample

    from mmdiffssl.models.pretrainers import DDPMPretrainer
    init_default_scope('mmpretrain')
    preprocessor = dict(type='mmpretrain.ClsDataPreprocessor')
    if normalise:
        preprocessor.update(mean=[127.5] * 3, std=[127.5] * 3)
    model = DDPMPretrainer(dict(TINY, learn_sigma=False), data_preprocessor=preprocessor)
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 16, 16), generator=gen, dtype=torch.uint8)
              for _ in range(2)]
    data = model.data_preprocessor(dict(inputs=images, data_samples=[DataSample()] * 2), True)
    if normalise:
        assert torch.isfinite(model(**data, mode='loss')['loss'])
    else:
        with pytest.raises(ValueError, match=r'DDPMPretrainer: input pixels span \[\d+, 25\d\]'
                                             r'; expected \[-1, 1\]'):
            model(**data, mode='loss')
