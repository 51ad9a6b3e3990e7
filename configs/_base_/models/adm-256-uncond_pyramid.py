# The dense-prediction backbone shared by the Mask R-CNN and UPerNet bases: OpenAI's
# unconditional 256x256 ADM (256x256_diffusion_uncond.pt, in checkpoints/), the last decoder
# block at strides 4, 8, 16, 32 (blocks 30, 27, 24, 21; 512, 512, 1024, 1024 channels) of the
# image noised to t=100 (configs/mask_rcnn/README.md says why).
# `_delete_` drops the ResNet settings of the mmdet/mmseg base the model dict merges into.
adm_pyramid_backbone = dict(
    _delete_=True,
    type='ADMBackbone',
    arch='adm-256-uncond',
    checkpoint='checkpoints/256x256_diffusion_uncond.pt',
    blocks='pyramid',
    timesteps=(100, ),
    # 'fixed': a noise field that depends only on the pixel position, so an image's
    # features do not depend on its batch, padding or the number of GPUs (evaluation
    # is reproducible); 'fresh' draws new noise every step (the paper's protocol)
    noise='fixed',
    frozen=True,
    with_cp=False,
    dtype='fp32')
