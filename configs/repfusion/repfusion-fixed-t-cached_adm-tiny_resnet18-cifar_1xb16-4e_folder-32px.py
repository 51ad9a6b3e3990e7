# The fixed-t folder run with the teacher's features read from a disk cache (filled on first
# use: block 8 at t=50 of every training image, pooled to 1x1, fp16) instead of running the
# teacher each iteration. The folder pipeline has no random augmentation, so the cached
# targets are the online ones up to fp16 rounding.
_base_ = './repfusion-fixed-t_adm-tiny_resnet18-cifar_1xb16-4e_folder-32px.py'
runner_type = 'FeatureCacheRunner'  # reads the cache below (mmdiffssl.engine)
teacher_cache = dict(root='data/teacher_cache', pool=1)
