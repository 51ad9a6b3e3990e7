# MLP head (pool to 2x2, 128 hidden, ReLU) on the tiny-ADM image-folder run.
_base_ = './linear_adm-tiny_1xb16-4e_folder-32px.py'
model = dict(
    head=dict(
        _delete_=True,
        type='MLPHead',
        num_classes={{_base_.num_classes}},
        pool_size=2,
        hidden_dims=(128, )))
