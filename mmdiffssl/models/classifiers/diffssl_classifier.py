"""mmpretrain's ImageClassifier with build-time backbone/head agreement checks."""
from mmengine.registry import MODELS
from mmpretrain.models.classifiers import ImageClassifier

from .checks import check_matches_backbone


@MODELS.register_module()
class DiffSSLClassifier(ImageClassifier):
    """``ImageClassifier`` that refuses a head built for another backbone layout.

    Identical to mmpretrain's ``ImageClassifier`` (same arguments, modes and state dict)
    except that, once built, :func:`check_matches_backbone` compares the head's declared
    ``blocks``, ``timesteps``, ``num_timesteps`` and ``in_channels`` with the backbone's and
    raises ``ValueError`` on a mismatch (e.g. a DifFormer head configured for blocks
    (19, 24, 30) on a backbone returning (24, 19, 30)). Channels are not compared when a neck
    sits between backbone and head.

    Shapes: inputs ``(B, 3, H, W)`` (the data preprocessor maps pixels to [-1, 1]).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.with_head:
            check_matches_backbone(self.head, self.backbone, check_channels=not self.with_neck)
