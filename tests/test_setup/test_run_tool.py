"""The suite's in-process tool runner (tests/conftest.py ``run_tool``): a run sees what a fresh
process would, prints what the command line would, and leaves this process as it found it."""
import os
import random
import re
import textwrap

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.visualization import Visualizer

from conftest import run_tool, run_tool_result

TOOL = '''
import os, random, sys, warnings
import numpy as np
import torch
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.visualization import Visualizer

print('argv', sys.argv[1:], 'cwd', os.getcwd(), 'env', os.environ.get('RUN_TOOL_TEST'))
# a fresh process has no global instances: the caller's visualizer is not visible
print('visualizer before:', Visualizer.check_instance_created('visualizer'))
Visualizer.get_instance('visualizer', save_dir=os.getcwd())
DefaultScope.get_instance('tool', scope_name='mmdet')
MMLogger.get_instance('tool_logger', log_file=os.path.join(os.getcwd(), 'tool.log'))
os.environ['RUN_TOOL_TEST'] = 'changed'
os.chdir('/')
torch.set_num_threads(3)
torch.set_default_dtype(torch.float64)
torch.manual_seed(123), np.random.seed(123), random.seed(123)
torch.serialization.add_safe_globals([np.dtype])
warnings.warn('a warning from the tool')
print('stderr line', file=sys.stderr)
code = sys.argv[1]
if code == 'raise':
    raise ValueError('bad value 7: allowed are 1 and 2')
if code != '0':
    sys.exit(int(code))
'''


@pytest.fixture
def tool(tmp_path):
    path = tmp_path / 'tool.py'
    path.write_text(textwrap.dedent(TOOL))
    return str(path)


def state():
    return (os.getcwd(), os.environ.get('RUN_TOOL_TEST'), torch.get_num_threads(),
            torch.get_default_dtype(), dict(DefaultScope._instance_dict),
            dict(Visualizer._instance_dict), dict(MMLogger._instance_dict),
            {g for g in torch.serialization.get_safe_globals()   # torch adds its own lazily
             if not getattr(g, '__module__', '').startswith('torch')}, torch.get_rng_state(),
            np.random.get_state()[1].copy(), random.getstate())


def same(a, b):
    for x, y in zip(a, b):
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, y)
        elif isinstance(x, np.ndarray):
            assert np.array_equal(x, y)
        else:
            assert x == y


def test_a_run_prints_like_the_command_line_and_restores_this_process(tool, tmp_path):
    callers = Visualizer.get_instance('visualizer')
    torch.manual_seed(5)
    before = state()
    out = run_tool([tool, '0'], cwd=str(tmp_path), env={'RUN_TOOL_TEST': 'set'})
    assert f"argv ['0'] cwd {tmp_path} env set" in out
    assert 'visualizer before: False' in out
    assert 'UserWarning: a warning from the tool' in out and 'stderr line' in out
    same(state(), before)
    assert Visualizer.get_instance('visualizer') is callers
    # a second run shows its warning again (a fresh process would)
    assert 'a warning from the tool' in run_tool([tool, '0'], cwd=str(tmp_path))
    same(state(), before)


def test_exit_codes_and_exceptions_as_the_interpreter_reports_them(tool, tmp_path):
    before = state()
    assert run_tool_result([tool, '3'], cwd=str(tmp_path))[0] == 3
    code, out = run_tool_result([tool, 'raise'], cwd=str(tmp_path))
    assert code == 1 and out.strip().splitlines()[-1] == (
        'ValueError: bad value 7: allowed are 1 and 2')
    with pytest.raises(AssertionError, match='bad value 7'):
        run_tool([tool, 'raise'], cwd=str(tmp_path))
    same(state(), before)


def test_our_tools_run_through_main_and_argparse_errors_exit_2():
    code, out = run_tool_result(['tools/print_blocks.py', 'adm-256-uncond',
                                 '--no-such-option'])
    assert code == 2 and 'unrecognized arguments: --no-such-option' in out
    fresh = run_tool(['tools/print_blocks.py', 'adm-256-uncond'], fresh_process=True)
    rows = [line for line in fresh.splitlines() if re.match(r'\s+\d+\s', line)]
    assert len(rows) > 10
    assert rows == [line for line in run_tool(['tools/print_blocks.py', 'adm-256-uncond'])
                    .splitlines() if re.match(r'\s+\d+\s', line)]
