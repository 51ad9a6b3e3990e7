"""Datasets: Fashion-MNIST preparation, the feature cache, transforms (need mmcv)."""
from .fashion_mnist import prepare_fashion_mnist
from .feature_cache import CachedFeatureDataset, CachedFeatures, cache_layout
from .teacher_cache import TeacherFeatureDataset

__all__ = ['prepare_fashion_mnist', 'CachedFeatureDataset', 'CachedFeatures', 'cache_layout',
           'TeacherFeatureDataset']
