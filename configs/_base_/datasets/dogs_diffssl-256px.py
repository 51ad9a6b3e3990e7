# Stanford Dogs: no mmpretrain class; CustomDataset with annotation files (120 classes).
# data/stanford_dogs/Images/<wnid>-<name>/*.jpg as downloaded, plus meta/train.txt and
# meta/test.txt with lines "<wnid>-<name>/<file>.jpg <label>" (label = the .mat label - 1);
# configs/diffssl/README.md shows how to write them from train_list.mat / test_list.mat.
_base_ = './imagenet_diffssl-256px.py'
data_root = 'data/stanford_dogs'
data_preprocessor = dict(num_classes=120)
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix='Images',
        pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/test.txt',
        data_prefix='Images',
        pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
