# CUB-200-2011 (mmpretrain CUB): data/CUB_200_2011/{images/,images.txt,image_class_labels.txt,
# train_test_split.txt} as downloaded. 200 classes; the paper's ImageNet augmentation.
_base_ = './imagenet_diffssl-256px.py'
data_root = 'data/CUB_200_2011'
data_preprocessor = dict(num_classes=200)
train_dataloader = dict(dataset=dict(type='CUB', data_root=data_root, split='train'))
val_dataloader = dict(dataset=dict(type='CUB', data_root=data_root, split='test'))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
