# Stanford Cars (mmpretrain StanfordCars, reads .mat files: needs scipy): 196 classes.
# data/Stanford_Cars/{car_ims/,cars_annos.mat} or {cars_train/,cars_test/,devkit/}.
_base_ = './imagenet_diffssl-256px.py'
data_root = 'data/Stanford_Cars'
data_preprocessor = dict(num_classes=196)
train_dataloader = dict(dataset=dict(type='StanfordCars', data_root=data_root, split='train'))
val_dataloader = dict(dataset=dict(type='StanfordCars', data_root=data_root, split='test'))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
