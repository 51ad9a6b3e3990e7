# Fashion-MNIST canvases as semantic segmentation (mmseg), in ADE20K's layout:
#   python tools/dataset_converters/fashion_mnist_canvas.py data/fashion_mnist_canvas
# Label PNGs hold 0 for the background and k + 1 for Fashion-MNIST class k; with
# reduce_zero_label=True (ADE20K's convention) the background is ignored (255) and k + 1
# becomes class k. mmseg's ADE20KDataset reads the folders too, but its metainfo is ADE20K's
# 150 classes; BaseSegDataset takes these 10 names. Canvases keep their size; training flips.
dataset_type = 'BaseSegDataset'
data_root = 'data/fashion_mnist_canvas'
metainfo = dict(
    classes=('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
             'Sneaker', 'Bag', 'Ankle boot'),
    palette=[[220, 20, 60], [119, 11, 32], [0, 0, 142], [0, 60, 100], [250, 170, 30],
             [106, 0, 228], [0, 130, 80], [255, 200, 0], [128, 64, 255], [0, 200, 200]])
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
canvas_dataset = dict(type=dataset_type, data_root=data_root, metainfo=metainfo,
                      img_suffix='.png', seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        canvas_dataset,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        canvas_dataset,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
