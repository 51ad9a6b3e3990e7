# Fine-grained sets without an mmpretrain class: CustomDataset with annotation files
# meta/train.txt and meta/test.txt ("<path under data_prefix> <label>" lines) under the set's
# data_root, at the diffssl 256px pipelines. Children set data_root, data_prefix and the
# number of classes.
_base_ = './imagenet_diffssl-256px.py'
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        ann_file='meta/train.txt',
        pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        ann_file='meta/test.txt',
        pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
