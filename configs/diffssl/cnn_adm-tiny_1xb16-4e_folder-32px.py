# CNN head (two conv3x3-BN-ReLU of 64 channels, global pool, linear) on the tiny-ADM run.
_base_ = './linear_adm-tiny_1xb16-4e_folder-32px.py'
model = dict(
    head=dict(
        _delete_=True,
        type='CNNHead',
        num_classes={{_base_.num_classes}},
        channels=(64, 64),
        bn_momentum=None))  # cumulative BN statistics: the run is only 16 iterations
optim_wrapper = dict(optimizer=dict(lr=0.03))
