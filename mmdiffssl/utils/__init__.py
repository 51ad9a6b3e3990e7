"""Utilities: checkpoint loading, torch/mmengine compatibility, distributed helpers."""
