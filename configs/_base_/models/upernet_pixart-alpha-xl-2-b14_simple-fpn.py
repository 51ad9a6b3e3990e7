# UPerNet on PixArt-α XL/2 block 14 with the simple pyramid of the DiT UPerNet base.
_base_ = ['./upernet_dit-xl-2-b14_simple-fpn.py', './pixart-alpha-xl-2-512_b14.py']
model = dict(backbone={{_base_.pixart_backbone}})
