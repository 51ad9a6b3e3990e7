"""The stack's known breakages on today's torch, numpy and setuptools, handled explicitly."""
import io
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

import mmdiffssl  # noqa: F401  (applies the allow-list)


def test_mmengine_history_buffer_and_numpy_load_safely():
    from mmengine.logging.history_buffer import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(1.5)
    buf.update(2.5)
    payload = {'hub': {'loss': buf}, 'arr': np.arange(3.0), 'scalar': np.float64(2.0)}
    stream = io.BytesIO()
    torch.save(payload, stream)
    stream.seek(0)
    loaded = torch.load(stream)  # weights_only=True is torch's default
    assert loaded['hub']['loss'].mean() == pytest.approx(2.0)
    assert loaded['hub']['loss'].max() == pytest.approx(2.5)
    np.testing.assert_array_equal(loaded['arr'], np.arange(3.0))


class _GetattrOnOther:
    """Pickles as getattr(OrderedDict, 'fromkeys'): a getattr outside HistoryBuffer."""

    def __reduce__(self):
        return (getattr, (OrderedDict, 'fromkeys'))


def test_other_getattr_still_refused():
    stream = io.BytesIO()
    torch.save({'x': _GetattrOnOther()}, stream)
    stream.seek(0)
    with pytest.raises(pickle.UnpicklingError, match='only HistoryBuffer'):
        torch.load(stream)


class Payload:
    """Any class that is not allow-listed."""


def test_arbitrary_classes_still_refused():
    stream = io.BytesIO()
    torch.save({'x': Payload()}, stream)
    stream.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(stream)


def test_setuptools_keeps_pkg_resources_for_mmcv_and_mmengine():
    """mmcv 2.1.0 and mmengine 0.10.7 import pkg_resources, removed in setuptools 82."""
    import setuptools
    major = int(setuptools.__version__.split('.')[0])
    assert major < 82, f'setuptools {setuptools.__version__}: requirements/build.txt pins <82'
    import mmcv.ops  # noqa: F401  (compiled ops built by tools/setup_env.sh)
    import mmengine.utils.package_utils  # noqa: F401


def test_numpy2_with_mmcv_transforms():
    from mmcv.transforms import Resize
    img = np.zeros((20, 30, 3), np.uint8)
    out = Resize(scale=(15, 10))({'img': img})
    assert out['img'].shape == (10, 15, 3)
