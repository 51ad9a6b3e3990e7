"""The ours-vs-reference speed benchmarks behind ``tools/benchmark.py``: ADM against
guided-diffusion (:mod:`.speed`, :mod:`.reference`), the latent diffusers families (SD, SDXL,
DiT, PixArt) against diffusers' full forward (:mod:`.latent`). FLOP counting is the
package's (:mod:`mmdiffssl.benchmark.flops`)."""
from .latent import FAMILIES, LatentBenchmarkConfig, run_latent_benchmark
from .speed import BenchmarkConfig, format_table, resolve_flags, run_benchmark

__all__ = ['BenchmarkConfig', 'format_table', 'resolve_flags', 'run_benchmark', 'FAMILIES',
           'LatentBenchmarkConfig', 'run_latent_benchmark']
