"""FLOP counting of diffusion forwards (the speed benchmarks themselves are in
``tools/benchmarks/``, behind ``tools/benchmark.py``)."""
from .flops import adm_flops, count_flops

__all__ = ['adm_flops', 'count_flops']
