# Semi-supervised ImageNet-1k: the attention-head recipe trained on the 1% labelled subset of
# SimCLR's split list (meta/train_1percent.txt, converted as in README.md); validation on the
# full val set. For another head, inherit its in1k config instead.
_base_ = './attention_adm-256-uncond_8xb16-28e_in1k.py'
train_dataloader = dict(dataset=dict(ann_file='meta/train_1percent.txt'))
