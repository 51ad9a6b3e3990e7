"""Analysis: block x timestep linear-probe sweeps and PCA feature visualisation."""
from .pca import feature_pca_grid, pca_rgb
from .sweep import linear_probe, plot_heatmap, run_sweep

__all__ = ['feature_pca_grid', 'pca_rgb', 'linear_probe', 'plot_heatmap', 'run_sweep']
