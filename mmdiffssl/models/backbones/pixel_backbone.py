"""PixelBackbone: the image itself as a one-level pyramid, the raw-pixel probe baseline."""
from mmengine.model import BaseModule


class PixelBackbone(BaseModule):
    """Returns the input unchanged, so a head on it is a probe of the raw pixels.

    The baseline the diffusion features must beat (a linear probe on Fashion-MNIST pixels
    reaches about 84%). No parameters.

    Args:
        in_channels (int): channels of the input images (reported as ``out_channels``).

    Shapes: input ``(B, C, H, W)``; output ``((B, C, H, W), )``.
    """

    def __init__(self, in_channels=3, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.out_channels = [int(in_channels)]
        self.out_strides = [1]

    def output_shape(self):
        """The image itself: one output, ``in_channels`` at stride 1."""
        from .base import ShapeSpec
        return [ShapeSpec(self.out_channels[0], 1)]

    def forward(self, x):
        if x.shape[1] != self.out_channels[0]:
            raise ValueError(f'PixelBackbone expects {self.out_channels[0]}-channel images, '
                             f'got shape {tuple(x.shape)}')
        return (x, )
