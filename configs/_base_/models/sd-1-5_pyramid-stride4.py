# The SD 1.5 pyramid with a stride-4 level in front for Mask R-CNN: the VAE encoder's feature
# at stride 4 of the clean image (its third down block before the downsampler, 512 channels),
# then the decoder pyramid at strides 8, 16, 32, 64 (320, 640, 1280, 1280 channels).
_base_ = './sd-1-5_pyramid.py'
sd_pyramid_backbone = dict(stride4='vae')
