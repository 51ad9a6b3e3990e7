"""The ours-vs-reference speed benchmarks behind ``tools/benchmark.py``: ADM against
guided-diffusion (:mod:`.speed`, :mod:`.reference`), SD against diffusers' full forward
(:mod:`.sd`). FLOP counting is the package's (:mod:`mmdiffssl.benchmark.flops`)."""
from .sd import SDBenchmarkConfig, run_sd_benchmark
from .speed import BenchmarkConfig, format_table, resolve_flags, run_benchmark

__all__ = ['BenchmarkConfig', 'format_table', 'resolve_flags', 'run_benchmark',
           'SDBenchmarkConfig', 'run_sd_benchmark']
