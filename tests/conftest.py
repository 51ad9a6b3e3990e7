"""Shared fixtures and helpers: the repo root, running a tool (in this process or a fresh one),
Fashion-MNIST in a temp data root, folders built once per test run, free ports.

``tools/`` is put on ``sys.path`` as the tools' own scripts have it, for ``cli_common``.

Under pytest-xdist (``make test`` runs two workers) every worker keeps one intra-op thread, and
so do the processes it starts; :func:`shared_folder` builds a folder once for all workers.
"""
import contextlib
import importlib.util
import io
import itertools
import os
import os.path as osp
import random
import runpy
import shutil
import socket
import subprocess
import sys
import traceback
import warnings

import numpy as np
import pytest
import torch
from filelock import FileLock

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(ROOT, 'tools')
HELPERS = osp.join(ROOT, 'tests', 'helpers')
sys.path.insert(0, TOOLS)  # the tools' shared module, cli_common

if os.environ.get('PYTEST_XDIST_WORKER'):
    # One intra-op thread per worker (two workers share two cores), inherited by the tools
    # and torchrun processes the tests start.
    torch.set_num_threads(1)
    os.environ.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')


def run_tool(args, cwd=None, env=None, timeout=900, fresh_process=False):
    """Run a tool as its command line would and return what it printed (stdout and stderr).

    A script of ours in ``tools/`` runs in this process through its ``main(argv)`` (another
    script, e.g. a codebase's own ``tools/train.py``, through ``runpy`` with ``sys.argv`` set),
    with the global state it touches restored afterwards (:func:`_tool_state`).
    ``fresh_process=True``, or ``python -c`` code, starts a new interpreter instead: for tests
    of the process boundary itself (imports, registration, what a fresh process allows) and one
    real command line per tool and codebase.

    Args:
        args (list[str]): the script (relative to ``cwd`` or absolute) and its arguments, or
            ``['-c', code]``.
        cwd (str, optional): working folder; the repo root by default.
        env (dict, optional): environment variables set for the run.
        timeout (int): seconds, for a fresh process.
        fresh_process (bool): run in a new interpreter.

    Raises:
        AssertionError: the tool failed (an exception or a non-zero exit); the message holds
            the tail of its output.
    """
    code, output = run_tool_result(args, cwd, env, timeout, fresh_process)
    assert code == 0, f'{args} failed ({code}):\n{output[-6000:]}'
    return output


def run_tool_result(args, cwd=None, env=None, timeout=900, fresh_process=False):
    """:func:`run_tool` for a run that may fail: returns ``(exit code, output)``.

    In this process an uncaught exception is exit code 1 with its traceback in the output,
    as the interpreter would print it.
    """
    cwd = cwd or ROOT
    if fresh_process or args[0] == '-c':
        full_env = dict(os.environ)
        full_env['PYTHONPATH'] = os.pathsep.join(
            [ROOT, HELPERS, full_env.get('PYTHONPATH', '')])
        full_env.update(env or {})
        proc = subprocess.run([sys.executable] + [str(a) for a in args], cwd=cwd,
                              env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        return proc.returncode, proc.stdout
    return _run_in_process(args, cwd, env)


_TOOL_RUNS = itertools.count()


def _run_in_process(args, cwd, env):
    script, argv = osp.abspath(osp.join(cwd, args[0])), [str(a) for a in args[1:]]
    output = io.StringIO()
    code = 0
    with _tool_state(cwd, env, [str(args[0])] + argv, output):
        try:
            if script.startswith(TOOLS + os.sep):
                spec = importlib.util.spec_from_file_location(
                    f'_tool_run_{next(_TOOL_RUNS)}', script)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                module.main(argv)
            else:
                runpy.run_path(script, run_name='__main__')
        except SystemExit as exit_:
            if isinstance(exit_.code, int) or exit_.code is None:
                code = exit_.code or 0
            else:   # sys.exit('message'): printed, exit code 1
                output.write(f'{exit_.code}\n')
                code = 1
        except Exception:  # noqa: BLE001  (reported as the interpreter would)
            output.write(traceback.format_exc())
            code = 1
    return code, output.getvalue()


def _manager_classes():
    """Every class with mmengine's global instances (scopes, loggers, message hubs,
    visualizers), subclasses included."""
    from mmengine.utils import ManagerMixin
    found, todo = [], [ManagerMixin]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [cls for cls in found if '_instance_dict' in cls.__dict__]


@contextlib.contextmanager
def _tool_state(cwd, env, argv, output):
    """What a tool run may change in this process, restored on exit: the working folder,
    ``sys.argv``/``sys.path``/``os.environ``, stdout and stderr (sent to ``output``), warning
    filters (shown again, to ``output``), mmengine's global instances (default scope, loggers,
    message hubs, visualizers: the run starts without this process's, as a fresh process
    would), the random generators, torch's thread count, default dtype, determinism switch and
    checkpoint allow-list, and a process group it started."""
    import torch.distributed as dist
    from mmengine.logging import MMLogger
    saved_cwd, saved_argv, saved_path = os.getcwd(), sys.argv, list(sys.path)
    saved_env = dict(os.environ)
    managers = {cls: dict(cls._instance_dict) for cls in _manager_classes()}
    for cls in managers:   # none of this process's instances, as in a fresh process (mmdet's
        cls._instance_dict.clear()   # and mmseg's configs name their visualizer 'visualizer')
    rng = random.getstate(), np.random.get_state(), torch.get_rng_state()
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    deterministic = torch.are_deterministic_algorithms_enabled()
    safe_globals = list(torch.serialization.get_safe_globals())
    had_group = dist.is_available() and dist.is_initialized()
    os.chdir(cwd)
    os.environ.update(env or {})
    sys.argv = argv
    sys.path[:0] = [HELPERS]
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output), \
                warnings.catch_warnings():
            warnings.resetwarnings()
            warnings.simplefilter('default')
            warnings.filterwarnings('ignore', category=DeprecationWarning)
            warnings.showwarning = _show_warning
            yield
    finally:
        if not had_group and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for logger in MMLogger._instance_dict.values():   # all made by the run
            for handler in list(logger.handlers):
                handler.close()
                logger.removeHandler(handler)
        for cls in _manager_classes():
            cls._instance_dict.clear()
            cls._instance_dict.update(managers.get(cls, {}))
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(safe_globals)
        torch.use_deterministic_algorithms(deterministic)
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning raised by a tool goes to its output, as it would on the command line."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def free_port():
    """A TCP port no process listens on now, for a torchrun rendezvous (two workers may run
    2-rank tests at once)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def shared_folder(tmp_path_factory, name, build):
    """A folder built once per test run by ``build(path)`` and shared, read-only, by every test
    (and every xdist worker) that asks for ``name``.

    The workers of one run share the parent of their base temp folders; a file lock makes one
    of them build while the others wait, and a marker written last tells a finished folder
    from one whose build failed (that is built again).
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'):
        base = base.parent
    path = base / 'shared' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    done = path.parent / f'{name}.done'
    with FileLock(str(path.parent / f'{name}.lock')):
        if not done.exists():
            if path.exists():
                shutil.rmtree(path)
            path.mkdir()
            build(str(path))
            done.touch()
    return str(path)


#: Modules of minutes (end-to-end and 2-rank runs) that xdist hands out first: a module runs on
#: one worker (``--dist loadfile``), and one started last would leave the other worker idle.
HEAVY_FIRST = (
    'test_tools/test_train_test.py', 'test_models/test_noise_ranks.py',
    'test_tools/test_pipeline.py', 'test_tools/test_repfusion_train.py',
    'test_tools/test_device_science.py', 'test_dense/test_dense_ddp.py',
    'test_datasets/test_feature_cache.py', 'test_tools/test_cached_configs.py',
    'test_dense/test_mask_rcnn_tools.py', 'test_dense/test_upernet_tools.py')


def pytest_collection_modifyitems(config, items):
    """The :data:`HEAVY_FIRST` modules first (a stable sort: the rest keep their order)."""
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split('::')[0].split('tests/', 1)[-1],
                                         len(rank)))


@pytest.fixture(scope='module', autouse=True)
def no_default_scope_from_other_modules():
    """Each test module starts without a default scope (mmengine's ``DefaultScope``), as a
    fresh process does: xdist hands the modules to its workers in no fixed order, so a scope
    another module left must not decide how a config builds here."""
    from mmengine.registry import DefaultScope
    DefaultScope._instance_dict.clear()


@pytest.fixture(scope='session')
def fashion_mnist_root(tmp_path_factory):
    """Fashion-MNIST idx files (from Debian's package) in a temp folder, for FashionMNIST."""
    from mmdiffssl.datasets import prepare_fashion_mnist
    from mmdiffssl.datasets.fashion_mnist import DEBIAN_FASHION_MNIST
    if not osp.isdir(DEBIAN_FASHION_MNIST):
        pytest.skip('needs Debian dataset-fashion-mnist (tools/setup_env.sh installs it)')
    return shared_folder(tmp_path_factory, 'fashion_mnist', prepare_fashion_mnist)


@pytest.fixture(scope='module')
def one_thread():
    """One intra-op thread for a test module: small ops on 2 shared cores run faster without
    threads fighting other jobs. Use ``pytestmark = pytest.mark.usefixtures('one_thread')``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
