# Stanford Dogs: no mmpretrain class; CustomDataset with annotation files (120 classes).
# data/stanford_dogs/Images/<wnid>-<name>/*.jpg as downloaded, plus meta/train.txt and
# meta/test.txt with lines "<wnid>-<name>/<file>.jpg <label>" (label = the .mat label - 1);
# configs/diffssl/README.md shows how to write them from train_list.mat / test_list.mat.
_base_ = './annotated-folder_diffssl-256px.py'
data_preprocessor = dict(num_classes=120)
_split = dict(dataset=dict(data_root='data/stanford_dogs', data_prefix='Images'))
train_dataloader = _split
val_dataloader = _split
test_dataloader = _split
