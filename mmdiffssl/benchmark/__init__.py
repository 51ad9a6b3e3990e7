"""Speed of feature extraction: FLOP counting and the ours-vs-guided-diffusion benchmark
behind ``tools/benchmark.py``. Needs no mmcv; the reference side needs guided-diffusion-sdk."""
from .flops import adm_flops, count_flops
from .speed import BenchmarkConfig, format_table, resolve_flags, run_benchmark

__all__ = ['adm_flops', 'count_flops', 'BenchmarkConfig', 'format_table', 'resolve_flags',
           'run_benchmark']
