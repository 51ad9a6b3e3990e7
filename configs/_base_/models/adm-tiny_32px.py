# A small ADM U-Net for 32x32 inputs (guided-diffusion flag names). Blocks: 1-6 input,
# 7 middle, 8-13 output; `python tools/print_blocks.py configs/_base_/models/adm-tiny_32px.py`
# prints channels and strides.
adm_tiny_32px = dict(
    image_size=32,
    num_channels=32,
    num_res_blocks=1,
    channel_mult='1,2,2',
    attention_resolutions='16,8',
    num_head_channels=16,
    learn_sigma=False,
    use_scale_shift_norm=True,
    resblock_updown=True,
    noise_schedule='linear',
    diffusion_steps=1000)
# The frozen backbone of the CPU-sized classification configs: block 8 (64 x 8 x 8) at t=50
# with fixed noise, a random re-drawn (non-degenerate) U-Net until a checkpoint is given.
adm_tiny_backbone = dict(
    type='ADMBackbone',
    arch=adm_tiny_32px,
    blocks=(8, ),
    timesteps=(50, ),
    noise='fixed',
    frozen=True,
    random_init='redraw')
