"""Analysis: block x timestep linear-probe sweeps and PCA feature visualisation."""
from .pca import feature_pca_grid, pca_rgb
from .sweep import (LinearProbe, SweepKeyMismatch, fit_linear_probe, linear_probe,
                    plot_heatmap, run_sweep, sweep_key)

__all__ = ['feature_pca_grid', 'pca_rgb', 'LinearProbe', 'SweepKeyMismatch', 'fit_linear_probe',
           'linear_probe', 'plot_heatmap', 'run_sweep', 'sweep_key']
