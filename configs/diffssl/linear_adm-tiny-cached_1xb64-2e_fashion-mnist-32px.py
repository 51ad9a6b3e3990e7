# The demo's linear probe trained from a feature cache: features are computed once (pooled
# 4x4, as the head pools), stored fp16 in data/feature_cache, and every epoch reads them from
# disk. Same head, schedule and metric as the online config.
_base_ = ['./linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py']
runner_type = 'FeatureCacheRunner'  # reads the cache below (mmdiffssl.engine)
feature_cache = dict(root='data/feature_cache')  # pooled as the head pools (4x4)
