# DifFeed on the tiny ADM: decoder blocks 8, 10, 12 fed back to encoder blocks 6, 4, 2
# (num_blocks + 1 - b), attention head on pass-2 block 8.
_base_ = './attention_adm-tiny_1xb16-4e_folder-32px.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='DifFeedBackbone',
        backbone={{_base_.adm_tiny_backbone}},
        feedback_blocks=(8, 10, 12)))
