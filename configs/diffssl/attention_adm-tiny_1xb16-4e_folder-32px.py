# Attention head (64 wide, 4 heads, 2 blocks) on the tiny-ADM image-folder run.
_base_ = './linear_adm-tiny_1xb16-4e_folder-32px.py'
model = dict(
    head=dict(
        _delete_=True,
        type='AttentionPoolHead',
        num_classes={{_base_.num_classes}},
        embed_dims=64,
        num_heads=4,
        num_layers=2))
