"""Feature-distillation losses between a student map and a teacher map.

All take ``student`` ``(B, C_s, H_s, W_s)`` and ``teacher`` ``(B, C_t, H_t, W_t)`` and return a
scalar. 'pooled_mse' and 'spatial_mse' need ``C_s == C_t`` (the distiller projects the
student first); 'attention' compares channel-free attention maps and needs no projection.
"""
import torch.nn.functional as F


def pooled_mse(student, teacher):
    """MSE between the global-average-pooled features ``(B, C)``."""
    return F.mse_loss(student.mean((2, 3)), teacher.mean((2, 3)))


def spatial_mse(student, teacher):
    """MSE between the maps, the student's resized (bilinear) to the teacher's size."""
    if student.shape[2:] != teacher.shape[2:]:
        student = F.interpolate(student, size=teacher.shape[2:], mode='bilinear',
                                align_corners=False)
    return F.mse_loss(student, teacher)


def attention_map(feature):
    """Attention-transfer map: mean of squared channels, flattened, L2-normalised ``(B, HW)``."""
    return F.normalize(feature.pow(2).mean(1).flatten(1), dim=1)


def attention_transfer(student, teacher):
    """Squared distance of the attention maps, the teacher's resized (area) to the student's."""
    if teacher.shape[2:] != student.shape[2:]:
        teacher = F.interpolate(teacher, size=student.shape[2:], mode='area')
    return (attention_map(student) - attention_map(teacher)).pow(2).sum(1).mean()


DISTILL_LOSSES = dict(pooled_mse=pooled_mse, spatial_mse=spatial_mse,
                      attention=attention_transfer)
#: losses that compare channels, so the student is projected to the teacher's width first
PROJECTED_LOSSES = ('pooled_mse', 'spatial_mse')
