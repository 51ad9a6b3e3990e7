"""mmseg's SegVisualizationHook for test runs that have no training split on disk.

mmseg 1.2.2's ``SegVisualizationHook`` passes ``step=runner.iter`` to the visualizer, and
``runner.iter`` builds the train loop, which builds the train dataloader: ``tools/test.py
--show-dir`` (ours and mmseg's) then fails with ``FileNotFoundError`` when only the test split
is on disk. This hook wraps mmseg's (same arguments, same drawings, same file names) and gives
it the train loop's iteration only where a train loop was built (validation during training),
0 otherwise, which is what ``runner.iter`` of a freshly built loop in a test run reads.
The segmentation schedules (``configs/_base_/schedules/segmentation_adamw-80k.py``) use it.
"""
from mmengine.hooks import Hook
from mmengine.runner import BaseLoop


class _StepOf:
    """The one runner attribute SegVisualizationHook reads, without building the train loop."""

    def __init__(self, runner):
        loop = getattr(runner, '_train_loop', None)
        self.iter = loop.iter if isinstance(loop, BaseLoop) else 0


class StandaloneSegVisualizationHook(Hook):
    """``SegVisualizationHook`` (mmseg) that never builds the train dataloader.

    Args:
        **kwargs: mmseg ``SegVisualizationHook``'s (``draw``, ``interval``, ``show``,
            ``wait_time``, ``backend_args``).
    """
    def __init__(self, **kwargs):
        from mmseg.engine.hooks import SegVisualizationHook
        self.hook = SegVisualizationHook(**kwargs)

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.hook.after_val_iter(_StepOf(runner), batch_idx, data_batch, outputs)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.hook.after_test_iter(_StepOf(runner), batch_idx, data_batch, outputs)
