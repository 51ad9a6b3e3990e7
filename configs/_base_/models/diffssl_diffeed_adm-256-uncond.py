# DifFeed: pass 1 (no grad) reads decoder blocks 21, 24, 27, 30, 33, 36; each goes through
# conv1x1 (no bias)-BN-ReLU to encoder block 38 - b and is added there in pass 2 (same x_t and t);
# the attention head reads pass-2 block 24. Trained: feedback layers + head; U-Net frozen.
_base_ = './diffssl_attention_adm-256-uncond.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='DifFeedBackbone',
        backbone={{_base_.adm_256_uncond_backbone}},
        feedback_blocks=(21, 24, 27, 30, 33, 36)))
