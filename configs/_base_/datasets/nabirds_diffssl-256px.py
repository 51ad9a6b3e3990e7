# NABirds: no mmpretrain class; CustomDataset with annotation files (555 classes).
# data/nabirds/images/<class_id>/*.jpg as downloaded, plus meta/train.txt and meta/test.txt with
# lines "<class_id>/<file>.jpg <label>", labels 0..554 = the sorted class ids present in
# image_class_labels.txt; configs/diffssl/README.md shows how to write them.
_base_ = './annotated-folder_diffssl-256px.py'
data_preprocessor = dict(num_classes=555)
_split = dict(dataset=dict(data_root='data/nabirds', data_prefix='images'))
train_dataloader = _split
val_dataloader = _split
test_dataloader = _split
