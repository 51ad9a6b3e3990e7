"""Datasets: Fashion-MNIST preparation and canvases, the feature cache, transforms (need mmcv)."""
from .canvas import (FASHION_MNIST_CLASSES, CanvasSpec, compose_canvas, load_fashion_mnist,
                     write_canvas_dataset)
from .fashion_mnist import prepare_fashion_mnist
from .feature_cache import CachedFeatureDataset, CachedFeatures, cache_layout
from .teacher_cache import TeacherFeatureDataset

__all__ = ['prepare_fashion_mnist', 'CachedFeatureDataset', 'CachedFeatures', 'cache_layout',
           'FASHION_MNIST_CLASSES', 'CanvasSpec', 'compose_canvas', 'load_fashion_mnist',
           'write_canvas_dataset', 'TeacherFeatureDataset']
