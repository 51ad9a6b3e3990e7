"""What device run 3 (tools/device/science.py) needs to run steps against a deadline and
write each one's files to ``$OUT`` as it finishes.

:class:`StepRecorder` keeps ``steps.json`` (one record per step: finished, failed or not
started, and why) on top of the files every device run writes (``device_run.RunFiles``),
and starts no step that would likely end after the limit (``device_run.skip_reason``);
:func:`choose_iters` turns a timed rehearsal of the pretraining into its number of
iterations.
"""
import math
import os.path as osp
import shutil
import time
import traceback

import device_run


def choose_iters(step_s, startup_s, budget_s, cap, unit=100):
    """Pretraining iterations that fit ``budget_s`` seconds: ``startup_s`` (runner build,
    dataloader workers) plus ``step_s`` per iteration, rounded down to a multiple of ``unit``,
    at least ``unit`` and at most ``cap``.

    Raises:
        ValueError: a step time that is not positive (the rehearsal measured nothing).
    """
    if not step_s > 0:
        raise ValueError(f'step_s={step_s!r}: the rehearsal measured no iteration time')
    fit = int((budget_s - startup_s) / step_s) // unit * unit
    return max(unit, min(cap, fit))


class StepRecorder(device_run.RunFiles):
    """Writes ``steps.json`` and other files in ``out`` as steps finish; logs in ``logs``.

    Args:
        out (str): the folder that comes back from the device (``$OUT``).
        logs (str): the folder packed into ``out/logs.tar.gz`` by :meth:`tar`.
        start (float): ``time.perf_counter()`` at the start of the run; step times and the
            limit count from it.
        limit_s (float): no step starts that would likely end after this many seconds.
    """

    def __init__(self, out, logs, start, limit_s):
        super().__init__(out, logs)
        self.start, self.limit_s = start, limit_s
        self.steps = []

    def elapsed(self):
        return time.perf_counter() - self.start

    def log(self, *parts):
        super().log(f'[{self.elapsed():6.1f} s]', *parts)

    def copy(self, path, name=None, folder=None):
        """Copy ``path`` into ``out`` (or ``folder``) as ``name``; returns the copy's path."""
        target = osp.join(folder or self.out, name or osp.basename(path))
        shutil.copyfile(path, target)
        return target

    def record(self, name, status, **fields):
        self.steps.append(dict(name=name, status=status, **fields))
        self.write_json('steps.json', self.steps)

    def step(self, name, fn, *args, estimate=0.0, needs=()):
        """Run ``fn(*args)`` as step ``name`` unless a step in ``needs`` did not finish or
        it would likely end after the limit (``estimate`` seconds from now); record it.

        Returns:
            The step's result, or None when it failed or was not started.
        """
        missing = [n for n in needs if self.status(n) != 'ok']
        reason = (f'needs {", ".join(missing)}' if missing
                  else device_run.skip_reason(self.elapsed(), math.inf, self.limit_s,
                                              estimate))
        if reason:
            self.log(f'not starting {name}: {reason}')
            self.record(name, 'not started', reason=reason)
            return None
        self.log(f'== {name} (guess {estimate:.0f} s)')
        begin = self.elapsed()
        try:
            result = fn(*args)
        except Exception as err:  # record it and go on with the steps that do not need it
            self.log(traceback.format_exc())
            self.record(name, 'failed', start_s=begin, seconds=self.elapsed() - begin,
                        error=f'{type(err).__name__}: {err}'[:500])
            return None
        self.record(name, 'ok', start_s=begin, seconds=self.elapsed() - begin)
        self.log(f'{name} done in {self.elapsed() - begin:.1f} s')
        return result

    def status(self, name):
        return next((s['status'] for s in reversed(self.steps) if s['name'] == name), None)

    def seconds(self, name, default):
        """How long step ``name`` took (``default`` when it did not finish)."""
        return next((s['seconds'] for s in reversed(self.steps)
                     if s['name'] == name and s['status'] == 'ok'), default)

    def tar(self, *extra):
        """``out/logs.tar.gz`` of the logs folder, after copying the folders ``extra`` into
        ``logs/extra/`` without their checkpoints, caches and arrays."""
        for path in extra:
            if osp.isdir(path):
                shutil.copytree(path, osp.join(self.logs, 'extra', osp.basename(path)),
                                ignore=shutil.ignore_patterns('*.pth', '*.npy', '*.npz'),
                                dirs_exist_ok=True)
        super().tar()
