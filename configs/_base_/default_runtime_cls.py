# mmpretrain's runtime, with mmdiffssl's modules registered.
_base_ = 'mmpretrain::_base_/default_runtime.py'
custom_imports = dict(imports=['mmdiffssl'], allow_failed_imports=False)
default_hooks = dict(logger=dict(type='LoggerHook', interval=50))
