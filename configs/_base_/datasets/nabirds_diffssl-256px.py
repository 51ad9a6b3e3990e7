# NABirds: no mmpretrain class; CustomDataset with annotation files (555 classes).
# data/nabirds/images/<class_id>/*.jpg as downloaded, plus meta/train.txt and meta/test.txt with
# lines "<class_id>/<file>.jpg <label>", labels 0..554 = the sorted class ids present in
# image_class_labels.txt; configs/diffssl/README.md shows how to write them.
_base_ = './imagenet_diffssl-256px.py'
data_root = 'data/nabirds'
data_preprocessor = dict(num_classes=555)
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix='images',
        pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/test.txt',
        data_prefix='images',
        pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
