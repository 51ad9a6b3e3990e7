# DifFeed on the tiny ADM: decoder blocks 8, 10, 12 fed back to encoder blocks 6, 4, 2
# (num_blocks + 1 - b), attention head on pass-2 block 8.
_base_ = './attention_adm-tiny_1xb16-4e_folder-32px.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='DifFeedBackbone',
        backbone=dict(
            type='ADMBackbone',
            arch={{_base_.adm_tiny_32px}},
            blocks=(8, ),
            timesteps=(50, ),
            noise='fixed',
            frozen=True,
            random_init='redraw'),
        feedback_blocks=(8, 10, 12)))
