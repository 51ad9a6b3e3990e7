# UPerNet on the frozen small ADM U-Net pretrained by
# configs/pretrain/ddpm_adm-tiny_1xb64-5e_fashion-mnist-32px.py (its EMA weights: the run's
# `state_dict` under the prefix 'unet.'); everything else as the random-init config it
# inherits. The checkpoint path is relative to this file (the repo root's work_dirs/, where
# tools/train.py run from the repo root writes), so the config works from any folder.
# Another checkpoint: --cfg-options model.backbone.checkpoint=PATH
_base_ = './upernet_adm-tiny-random-frozen_1xb16-8k_fashion-mnist-canvas.py'

model = dict(backbone=dict(
    checkpoint='{{ fileDirname }}/../../../work_dirs/ddpm_adm-tiny_1xb64-5e_fashion-mnist-32px/'
    'epoch_5.pth',
    checkpoint_prefix='unet.'))
