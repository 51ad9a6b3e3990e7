# The raw-pixel baseline of the demo probe: the same linear probe, data and schedule as
# linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py, on the 32x32 pixels in [-1, 1] themselves
# (PixelBackbone; 3 x 32 x 32 -> linear). Diffusion features must beat it.
_base_ = './linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py'
model = dict(
    backbone=dict(type='PixelBackbone', in_channels=3, _delete_=True),
    head=dict(pool_size=32))
