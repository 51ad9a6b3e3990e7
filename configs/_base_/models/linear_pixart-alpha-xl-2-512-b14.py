# Linear probe on frozen PixArt-α XL/2 512, block 14 (1152 channels, stride 16), t=100, the
# empty prompt's T5 embedding (pool 2 x 2, linear; in_channels from the backbone).
_base_ = ['./diffssl_linear_adm-256-uncond.py', './pixart-alpha-xl-2-512_b14.py']
model = dict(backbone={{_base_.pixart_backbone}})
