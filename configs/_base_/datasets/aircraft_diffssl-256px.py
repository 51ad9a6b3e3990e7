# FGVC-Aircraft 2013b (mmpretrain FGVCAircraft), variant level: 100 classes; train on
# trainval, test on test. data/fgvc-aircraft-2013b/data/{images/,images_variant_*.txt,...}.
_base_ = './imagenet_diffssl-256px.py'
data_root = 'data/fgvc-aircraft-2013b'
data_preprocessor = dict(num_classes=100)
train_dataloader = dict(dataset=dict(type='FGVCAircraft', data_root=data_root, split='trainval'))
val_dataloader = dict(dataset=dict(type='FGVCAircraft', data_root=data_root, split='test'))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
