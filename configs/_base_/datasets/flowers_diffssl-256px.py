# Oxford Flowers-102 (mmpretrain Flowers102, reads .mat files: needs scipy): 102 classes;
# train on trainval (2040 images), test on test (6149). data/Flowers102/{jpg/,imagelabels.mat,
# setid.mat}.
_base_ = './imagenet_diffssl-256px.py'
data_root = 'data/Flowers102'
data_preprocessor = dict(num_classes=102)
train_dataloader = dict(dataset=dict(type='Flowers102', data_root=data_root, split='trainval'))
val_dataloader = dict(dataset=dict(type='Flowers102', data_root=data_root, split='test'))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
