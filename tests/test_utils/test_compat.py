"""The stack's known breakages on today's torch, numpy and setuptools, handled explicitly."""
import io
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from mmdiffssl.utils.compat import allow_mmengine_checkpoints


def test_scoped_allow_list_is_undone_after_the_block():
    """In a fresh process: allowed inside the block, refused after it (nothing left set)."""
    from conftest import run_tool
    code = '\n'.join([
        'import io, pickle, numpy as np, torch',
        'from mmengine.logging.history_buffer import HistoryBuffer',
        'from mmdiffssl.utils.compat import mmengine_checkpoints_allowed',
        'buf = HistoryBuffer(); buf.update(1.5); s = io.BytesIO(); torch.save({"b": buf}, s)',
        'with mmengine_checkpoints_allowed():',
        '    s.seek(0); assert torch.load(s)["b"].mean() == 1.5',
        's.seek(0)',
        'try:',
        '    torch.load(s)',
        'except pickle.UnpicklingError:',
        '    print("refused after the block")',
        'from mmdiffssl.utils.compat import allow_mmengine_checkpoints',
        'allow_mmengine_checkpoints()',
        'with mmengine_checkpoints_allowed():',
        '    pass',
        's.seek(0); assert torch.load(s)["b"].mean() == 1.5',
        'print("a process-wide allow-list survives the block")'])
    out = run_tool(['-c', code])
    assert 'refused after the block' in out
    assert 'a process-wide allow-list survives the block' in out


def test_mmengine_history_buffer_and_numpy_load_safely():
    allow_mmengine_checkpoints()
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


def test_our_reader_opens_run_checkpoints_in_a_process_that_built_nothing(tmp_path):
    """tools/sample.py reads a pretraining run's checkpoint without building a model."""
    from mmengine.logging.history_buffer import HistoryBuffer

    from conftest import run_tool
    buf = HistoryBuffer()
    buf.update(1.5)
    path = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': {'w': torch.ones(2)}, 'message_hub': {'loss': buf}}, path)
    code = '\n'.join([
        'import pickle, torch',
        'from mmdiffssl.utils.checkpoint import read_checkpoint_file',
        f'assert read_checkpoint_file({path!r})["state_dict"]["w"].sum() == 2',
        'try:',
        f'    torch.load({path!r})',
        'except pickle.UnpicklingError:',
        '    print("read; plain torch.load still refuses")'])
    assert 'read; plain torch.load still refuses' in run_tool(['-c', code])
