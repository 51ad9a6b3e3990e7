"""RepFusionDistiller: a diffusion U-Net's features at a (learned) timestep into a small student.

RepFusion ("Diffusion Model as Representation Learner", ICCV 2023): the frozen teacher is a
diffusion backbone read at one block; for each image a timestep policy picks t, the teacher's
feature of that image at t is the target, and the student (any mmpretrain backbone) learns to
predict it through a 1x1 projection. A learned policy is rewarded by how well an auxiliary
classifier on the teacher's pooled feature at t predicts the label.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from mmdiffssl.models.input_range import classification_preprocessor

from .distill_losses import DISTILL_LOSSES, PROJECTED_LOSSES
from .timestep_policies import FixedTimestep


class RepFusionDistiller(BaseModel):
    """Distils a frozen diffusion backbone's block feature at timestep t into a student.

    Args:
        teacher (dict): a frozen diffusion backbone config: ``ADMBackbone``, or
            ``DiffusersUNetBackbone`` for diffusers DDPMs (RepFusion's CIFAR-10 teacher); its
            ``noise`` mode applies ('none' = RepFusion's clean-image variant).
        student (dict): any backbone config returning a tuple of maps (mmpretrain's
            ``ResNet``, ``ResNet_CIFAR``, ``MobileNetV2``, ...); default mmpretrain's
            ResNet-18, last stage.
        timestep_policy (dict): ``FixedTimestep``, ``UniformTimestep`` or
            ``LearnedTimestepPolicy``; its timesteps are checked against the teacher's range.
        teacher_block (int, optional): the teacher block distilled; default the first of the
            teacher's ``blocks``.
        teacher_tap (str, optional): distil a tensor inside a block instead (a tap of the
            teacher, e.g. RepFusion's ``'mid_block.resnets.1.conv2'`` of the CIFAR-10 DDPM or
            ``'middle_block.2.out_layers.3'`` of the ImageNet-64 ADM); the teacher is then
            built with ``taps=(teacher_tap, )`` and no block outputs.
        student_index (int): which student output is distilled (default the last).
        student_channels (int, optional): channels of that output; inferred by a forward of
            a 64x64 zero image when None.
        distill_loss (str): 'pooled_mse' (default), 'spatial_mse' or 'attention'.
        distill_weight (float): weight of the distillation loss.
        num_classes (int, optional): classes of the auxiliary classifier on the teacher's
            pooled feature; required by a learned policy (its reward is the classifier's
            negative cross-entropy at the drawn timestep).
        aux_hidden_layers (int): hidden layers of the auxiliary classifier, each a Linear
            and a ReLU; 0 (default) makes it linear, 2 is the reference's MLP
            ``C_t -> C_t -> C_t -> num_classes``.
        aux_hidden_channels (int, optional): width of each hidden layer; default the
            teacher's channels ``C_t``.
        teacher_class_wnids (str | Sequence[str], optional): for a teacher built with
            ``class_label='per_image'`` (a class-conditional ADM): the dataset's class
            wnids (a text file, one per line, or a list), in any order; dataset label i is
            the i-th wnid in sorted order (as mmpretrain's ``CustomDataset`` numbers class
            folders) and reaches the teacher as that wnid's ImageNet-1k index
            (:func:`~mmdiffssl.datasets.imagenet_classes.dataset_to_imagenet_indices`). Read
            at the first loss call.
        teacher_from_cache (bool): read the teacher's feature from each sample's
            ``teacher_feature`` (``TeacherFeatureDataset``, the ``teacher_cache`` config
            switch) instead of running the teacher; needs a ``FixedTimestep`` policy.
        data_preprocessor (dict, optional): maps pixels to the teacher's [-1, 1]
            (mmpretrain's ``ClsDataPreprocessor`` unless a type is given).
        init_cfg (dict, optional): mmengine init config.

    Shapes: inputs ``(B, 3, H, W)`` in [-1, 1]; the teacher block's feature
    ``(B, C_t, H_t, W_t)``; the student's ``(B, C_s, H_s, W_s)`` is projected by a 1x1 conv
    to ``C_t`` for the MSE losses. ``mode='tensor'`` returns the student's output tuple.

    Losses (``mode='loss'``): ``loss_distill``; with a learned policy also ``loss_aux_cls``
    (trains the auxiliary classifier), ``loss_policy`` (REINFORCE) and the logged scalars
    ``reward``, ``policy_entropy`` and ``policy_mean_t`` (expected timestep).
    """

    def __init__(self,
                 teacher,
                 student=dict(type='mmpretrain.ResNet', depth=18, out_indices=(3, )),
                 timestep_policy=dict(type='FixedTimestep', timestep=150),
                 teacher_block=None,
                 teacher_tap=None,
                 student_index=-1,
                 student_channels=None,
                 distill_loss='pooled_mse',
                 distill_weight=1.0,
                 num_classes=None,
                 aux_hidden_layers=0,
                 aux_hidden_channels=None,
                 teacher_class_wnids=None,
                 teacher_from_cache=False,
                 data_preprocessor=None,
                 init_cfg=None):
        if isinstance(data_preprocessor, dict):
            data_preprocessor = classification_preprocessor(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if teacher_tap is not None:
            if teacher_block is not None:
                raise ValueError('give teacher_block or teacher_tap, not both')
            teacher = dict(teacher, blocks=(), taps=(teacher_tap, ))
        self.teacher = MODELS.build(teacher)
        if not getattr(self.teacher, 'frozen', False):
            raise ValueError('the RepFusion teacher must be frozen: set teacher.frozen=True')
        self.student = MODELS.build(student)
        self.timestep_policy = MODELS.build(timestep_policy)
        self.teacher.resolve_timesteps(tuple(self.timestep_policy.candidates()))
        if teacher_from_cache and not isinstance(self.timestep_policy, FixedTimestep):
            raise ValueError('teacher_from_cache needs a FixedTimestep policy (the cache holds '
                             f'one timestep), not {type(self.timestep_policy).__name__}')
        self.teacher_from_cache = teacher_from_cache

        self.teacher_tap = teacher_tap
        if teacher_tap is not None:
            self.teacher_block = None
            teacher_channels = self.teacher.tap_shapes()[0].channels
        else:
            self.teacher_block = self.teacher.block_table.resolve(
                teacher_block if teacher_block is not None else self.teacher.blocks[0])[0]
            teacher_channels = self.teacher.block_shape(self.teacher_block).channels
        self.student_index = int(student_index)

        if distill_loss not in DISTILL_LOSSES:
            raise ValueError(f"distill_loss='{distill_loss}' is not one of "
                             f'{tuple(DISTILL_LOSSES)}')
        self.distill_loss = distill_loss
        self.distill_weight = float(distill_weight)
        self.projector = None
        if distill_loss in PROJECTED_LOSSES:
            if student_channels is None:
                student_channels = self._infer_student_channels()
            self.projector = nn.Conv2d(int(student_channels), teacher_channels, 1)

        self.aux_head = None
        if self.timestep_policy.learned:
            if num_classes is None:
                raise ValueError('a learned timestep policy needs num_classes: its reward is '
                                 'the auxiliary classifier\'s cross-entropy on the labels')
            self.aux_head = aux_classifier(teacher_channels, num_classes, aux_hidden_layers,
                                           aux_hidden_channels)

        self.per_image_labels = bool(self.teacher.needs_labels)
        if self.per_image_labels != (teacher_class_wnids is not None):
            raise ValueError('teacher_class_wnids and a teacher that takes per-image labels '
                             "(class_label='per_image') go together: the wnids map dataset "
                             "labels to the teacher's classes (the teacher "
                             f"{'takes' if self.per_image_labels else 'takes no'} labels, "
                             f'teacher_class_wnids={teacher_class_wnids!r})')
        self.teacher_class_wnids = teacher_class_wnids
        self._teacher_class_table = None

    def _infer_student_channels(self, size=64):
        device = next(self.student.parameters()).device
        was_training = self.student.training
        self.student.eval()
        with torch.no_grad():
            out = self.student(torch.zeros(2, 3, size, size, device=device))
        self.student.train(was_training)
        return self._pick(out).shape[1]

    def _pick(self, student_out):
        if not isinstance(student_out, (tuple, list)):
            student_out = (student_out, )
        if not -len(student_out) <= self.student_index < len(student_out):
            raise ValueError(f'student_index {self.student_index} is outside the student\'s '
                             f'{len(student_out)} outputs')
        return student_out[self.student_index]

    # ------------------------------------------------------------------ forward
    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'tensor':
            return self.student(inputs)
        raise ValueError(f"RepFusionDistiller has modes 'loss' and 'tensor', not '{mode}': "
                         'a distiller predicts nothing; evaluate the student after stage two '
                         '(configs/repfusion/README.md)')

    def teacher_features(self, inputs, timesteps, labels=None):
        """The teacher's feature of each image at its timestep: ``(B, C_t, H_t, W_t)``.

        ``labels`` ``(B,)`` are the teacher's class indices of a per-image conditional
        teacher (:meth:`teacher_labels`), None otherwise.
        """
        with torch.no_grad():
            if self.teacher_tap is not None:
                return self.teacher.intermediates_at(inputs, timesteps, taps=(self.teacher_tap, ),
                                                     labels=labels)[self.teacher_tap]
            return self.teacher.intermediates_at(inputs, timesteps, blocks=(self.teacher_block, ),
                                                 labels=labels)[self.teacher_block]

    def teacher_labels(self, data_samples, device):
        """The teacher's class index ``(B,)`` of each sample's ``gt_label`` (None when the
        teacher takes no per-image labels)."""
        if not self.per_image_labels:
            return None
        if self._teacher_class_table is None:
            from mmdiffssl.datasets.imagenet_classes import dataset_to_imagenet_indices
            self._teacher_class_table = torch.tensor(
                dataset_to_imagenet_indices(self.teacher_class_wnids), dtype=torch.long)
        labels = gt_labels(data_samples)
        table = self._teacher_class_table
        if labels.min() < 0 or labels.max() >= len(table):
            raise ValueError(f'labels {labels.tolist()} fall outside the {len(table)} classes '
                             'of teacher_class_wnids')
        return table[labels].to(device)

    @staticmethod
    def cached_teacher_features(data_samples):
        """The samples' cached ``teacher_feature`` rows, stacked: ``(B, C_t, h, w)`` float32."""
        if data_samples is None or not all('teacher_feature' in s for s in data_samples):
            raise ValueError('teacher_from_cache=True but the samples carry no teacher_feature: '
                             'set the teacher_cache config switch (TeacherFeatureDataset)')
        return torch.stack([s.teacher_feature for s in data_samples]).float()

    def loss(self, inputs, data_samples):
        """Distillation (+ policy) losses for a batch; see the class docstring."""
        policy = self.timestep_policy(inputs)
        if self.teacher_from_cache:
            target = self.cached_teacher_features(data_samples).to(inputs.device)
        else:
            target = self.teacher_features(inputs, policy.timesteps,
                                           self.teacher_labels(data_samples, inputs.device))
        student = self._pick(self.student(inputs))
        if self.projector is not None:
            student = self.projector(student)
        loss_fn = DISTILL_LOSSES[self.distill_loss]
        losses = dict(loss_distill=self.distill_weight * loss_fn(student, target.detach()))

        if self.timestep_policy.learned:
            labels = gt_labels(data_samples).to(inputs.device)
            losses.update(policy_losses(self.timestep_policy, self.aux_head, policy, target,
                                        labels))
        return losses


def gt_labels(data_samples):
    """``(B,)`` int64 ground-truth class of each sample."""
    if data_samples is None or not all('gt_label' in s for s in data_samples):
        raise ValueError('the samples carry no gt_label: a learned policy and a per-image '
                         'conditional teacher need each image\'s class')
    return torch.cat([s.gt_label.reshape(-1) for s in data_samples]).long()


def aux_classifier(in_channels, num_classes, hidden_layers=0, hidden_channels=None):
    """RepFusion's auxiliary classifier on the teacher's pooled feature.

    ``hidden_layers`` times (Linear to ``hidden_channels``, default ``in_channels``, then
    ReLU), then a Linear to ``num_classes``: ``(B, in_channels)`` -> ``(B, num_classes)``.
    The reference's is ``hidden_layers=2``: ``C -> C -> C -> K`` with two ReLUs.
    """
    if not (isinstance(hidden_layers, int) and hidden_layers >= 0):
        raise ValueError(f'aux_hidden_layers={hidden_layers!r} is not an integer >= 0')
    if hidden_channels is not None and hidden_layers == 0:
        raise ValueError(f'aux_hidden_channels={hidden_channels} is set but aux_hidden_layers '
                         'is 0 (a linear classifier): set aux_hidden_layers >= 1')
    width = in_channels if hidden_channels is None else int(hidden_channels)
    layers, channels = [], in_channels
    for _ in range(hidden_layers):
        layers += [nn.Linear(channels, width), nn.ReLU(inplace=True)]
        channels = width
    if not layers:
        return nn.Linear(channels, num_classes)
    return nn.Sequential(*layers, nn.Linear(channels, num_classes))


def policy_losses(policy, aux_head, output, target, labels):
    """RepFusion's losses for a learned timestep policy.

    The auxiliary classifier reads the teacher's pooled feature at each image's drawn
    timestep; its cross-entropy trains it (``loss_aux_cls``), and minus that cross-entropy is
    the policy's reward (``loss_policy``, REINFORCE with entropy bonus and the policy's
    baseline, if it has one).

    Args:
        policy (LearnedTimestepPolicy): the policy that drew ``output``.
        aux_head (nn.Module): ``(B, C_t)`` -> ``(B, num_classes)`` logits.
        output (PolicyOutput): the policy's training output for the batch.
        target (Tensor): the teacher's feature ``(B, C_t, H_t, W_t)`` at the drawn timesteps.
        labels (Tensor): ``(B,)`` class indices.

    Returns:
        dict: ``loss_aux_cls``, ``loss_policy`` and the logged ``reward``,
        ``policy_entropy`` and ``policy_mean_t`` (the distribution's expected timestep).
    """
    logits = aux_head(target.detach().mean((2, 3)))
    cross_entropy = F.cross_entropy(logits, labels, reduction='none')
    reward = -cross_entropy.detach()
    table = policy.timestep_table.to(output.probs.dtype)
    return dict(loss_aux_cls=cross_entropy.mean(),
                loss_policy=policy.reinforce_loss(output, reward),
                reward=reward.mean(),
                policy_entropy=output.entropy.detach().mean(),
                policy_mean_t=(output.probs.detach() * table).sum(1).mean())
