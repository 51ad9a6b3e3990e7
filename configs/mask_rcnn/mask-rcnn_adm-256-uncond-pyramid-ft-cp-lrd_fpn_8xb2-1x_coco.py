# As mask-rcnn_adm-256-uncond-pyramid-ft-cp_fpn_8xb2-1x_coco.py with layer-wise lr decay
# over the U-Net blocks on top of the 0.1x backbone lr: block b gets
# 0.1 * 0.9 ** (31 - b) of the base lr (block 30: 0.09x, block 1: 0.004x, timestep
# embedding 0.0038x); FPN and heads keep the base lr (LayerDecayOptimWrapperConstructor).
_base_ = './mask-rcnn_adm-256-uncond-pyramid-ft-cp_fpn_8xb2-1x_coco.py'
custom_imports = dict(imports=['mmdiffssl', 'mmdiffssl.engine'], allow_failed_imports=False)

optim_wrapper = dict(
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9))
