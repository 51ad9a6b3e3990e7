# ADE20K (150 classes, label 0 "other" ignored: reduce_zero_label=True) with mmseg's
# 512 x 512 recipe: random rescale 0.5-2.0 of (2048, 512), 512 x 512 crops, flip, photometric
# distortion; testing resizes to (2048, 512) keeping the ratio (whole-image inference, padded
# to a multiple of 32 by the model's data preprocessor). Data in
# data/ade/ADEChallengeData2016/{images,annotations}/{training,validation}/.
_base_ = 'mmseg::_base_/datasets/ade20k.py'

# 8 GPUs x 2 images (as mmseg's Swin/ViT UPerNet configs)
train_dataloader = dict(batch_size=2, num_workers=4)
val_dataloader = dict(batch_size=1, num_workers=4)
test_dataloader = val_dataloader
