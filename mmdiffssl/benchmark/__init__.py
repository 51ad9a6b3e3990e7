"""Speed of feature extraction: FLOP counting and the ours-vs-reference benchmarks behind
``tools/benchmark.py`` (ADM against guided-diffusion, SD against diffusers' full forward).
Needs no mmcv; the ADM reference needs guided-diffusion-sdk, the SD side diffusers."""
from .flops import adm_flops, count_flops
from .sd import SDBenchmarkConfig, run_sd_benchmark
from .speed import BenchmarkConfig, format_table, resolve_flags, run_benchmark

__all__ = ['adm_flops', 'count_flops', 'BenchmarkConfig', 'format_table', 'resolve_flags',
           'run_benchmark', 'SDBenchmarkConfig', 'run_sd_benchmark']
