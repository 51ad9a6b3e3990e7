"""Timestep policies of the RepFusion distiller: which diffusion timestep the teacher runs at.

Each policy maps an image batch ``(B, 3, H, W)`` to a :class:`PolicyOutput` with one integer
timestep per image. ``FixedTimestep`` and ``UniformTimestep`` have no parameters;
``LearnedTimestepPolicy`` is a small CNN with a categorical distribution over candidate
timesteps, trained with REINFORCE (:meth:`LearnedTimestepPolicy.reinforce_loss`).
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
from mmengine.dist import get_rank
from torch import Tensor

from mmdiffssl.models.noise import GeneratorStateMixin


@dataclass
class PolicyOutput:
    """What a policy returns for a batch of B images.

    Attributes:
        timesteps: ``(B,)`` int64 timesteps, one per image.
        log_prob: ``(B,)`` log-probability of each drawn timestep (learned policy only).
        entropy: ``(B,)`` entropy of each image's distribution (learned policy only).
        probs: ``(B, K)`` probabilities over the K candidate timesteps (learned policy only).
    """
    timesteps: Tensor
    log_prob: Optional[Tensor] = None
    entropy: Optional[Tensor] = None
    probs: Optional[Tensor] = None


class FixedTimestep(nn.Module):
    """Every image at the same timestep ``timestep``."""

    learned = False

    def __init__(self, timestep=150):
        super().__init__()
        self.timestep = int(timestep)

    def candidates(self):
        """tuple[int]: every timestep the policy can return."""
        return (self.timestep, )

    def forward(self, images):
        """``(B, 3, H, W)`` -> timesteps ``(B,)`` all equal to ``timestep``."""
        t = torch.full((images.shape[0], ), self.timestep, dtype=torch.long,
                       device=images.device)
        return PolicyOutput(t)


class UniformTimestep(GeneratorStateMixin, nn.Module):
    """Each image at a timestep drawn uniformly from ``[low, high)``.

    The draws come from the module's own generator (seeded by ``seed + rank``), whose state is
    saved in the state dict, so a resumed run draws what a straight run draws.
    In eval mode the policy returns the middle of the range for every image.
    """

    learned = False

    def __init__(self, low=0, high=1000, seed=0):
        super().__init__()
        if not int(low) < int(high):
            raise ValueError(f'UniformTimestep needs low < high, got low={low}, high={high}')
        self.low, self.high = int(low), int(high)
        self.generator = torch.Generator().manual_seed(int(seed) + get_rank())

    def candidates(self):
        return tuple(range(self.low, self.high))

    def forward(self, images):
        batch = images.shape[0]
        if self.training:
            t = torch.randint(self.low, self.high, (batch, ), generator=self.generator)
        else:
            t = torch.full((batch, ), (self.low + self.high - 1) // 2, dtype=torch.long)
        return PolicyOutput(t.to(images.device))


class LearnedTimestepPolicy(GeneratorStateMixin, nn.Module):
    """A small CNN on the image with a categorical distribution over candidate timesteps.

    Training draws one timestep per image from the distribution (the module's own generator,
    saved in the state dict); eval takes the most probable one. The policy is trained by
    :meth:`reinforce_loss` with a reward per image (RepFusion: minus the cross-entropy of a
    classifier on the teacher's feature at the drawn timestep), optionally a moving-average
    baseline, and an entropy bonus whose weight ``entropy_coef`` a hook
    (``TimestepPolicyHook``) decays. RepFusion's reference: every timestep a candidate
    (``stride=1``, the default), no baseline (``baseline_momentum=None``).

    Args:
        candidates (Sequence[int], optional): the K timesteps to choose from; default
            ``range(0, num_steps, stride)``.
        num_steps (int): the teacher's number of diffusion steps (for the default candidates).
        stride (int): spacing of the default candidates.
        width (int): channels of the first conv layer (doubled twice).
        entropy_coef (float): initial weight of the entropy bonus.
        baseline_momentum (float, optional): momentum of the reward baseline (a moving
            average of the batch-mean reward, subtracted from the reward; our variance
            reduction, default 0.9); None is plain REINFORCE, the reference's.
        seed (int): seed of the sampling generator (plus the rank).

    Shapes: input ``(B, 3, H, W)``; ``probs`` ``(B, K)``.
    """

    learned = True

    def __init__(self, candidates=None, num_steps=1000, stride=1, width=16, entropy_coef=0.1,
                 baseline_momentum=0.9, seed=0):
        super().__init__()
        if candidates is None:
            candidates = range(0, int(num_steps), int(stride))
        candidates = [int(t) for t in candidates]
        if len(candidates) < 2:
            raise ValueError(f'a learned policy needs at least 2 candidate timesteps, got '
                             f'{candidates}')
        if len(set(candidates)) != len(candidates):
            raise ValueError(f'candidate timesteps repeat: {candidates}')
        self.register_buffer('timestep_table', torch.tensor(candidates, dtype=torch.long),
                             persistent=False)
        layers, channels = [], 3
        for out in (width, width * 2, width * 4):
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.logits = nn.Linear(channels, len(candidates))
        nn.init.zeros_(self.logits.weight)  # start uniform over the candidates
        nn.init.zeros_(self.logits.bias)
        self.entropy_coef = float(entropy_coef)
        if baseline_momentum is not None and not 0 <= float(baseline_momentum) < 1:
            raise ValueError(f'baseline_momentum={baseline_momentum} is not in [0, 1) or None')
        self.baseline_momentum = None if baseline_momentum is None else float(baseline_momentum)
        self.register_buffer('reward_baseline', torch.zeros(()))
        self.register_buffer('baseline_ready', torch.zeros((), dtype=torch.bool))
        # running sum of the batch-mean distribution, read and reset by TimestepPolicyHook
        self.register_buffer('probs_sum', torch.zeros(len(candidates), dtype=torch.float64),
                             persistent=False)
        self.register_buffer('probs_count', torch.zeros((), dtype=torch.long), persistent=False)
        self.generator = torch.Generator().manual_seed(int(seed) + get_rank())

    def candidates(self):
        return tuple(self.timestep_table.tolist())

    def forward(self, images):
        logits = self.logits(self.features(images))
        log_probs = logits.log_softmax(-1)
        probs = log_probs.exp()
        if self.training:
            index = torch.multinomial(probs.detach().float().cpu(), 1,
                                      generator=self.generator).squeeze(1).to(images.device)
            with torch.no_grad():
                self.probs_sum += probs.detach().double().mean(0)
                self.probs_count += 1
        else:
            index = probs.argmax(-1)
        return PolicyOutput(
            timesteps=self.timestep_table[index],
            log_prob=log_probs.gather(1, index[:, None]).squeeze(1),
            entropy=-(probs * log_probs).sum(-1),
            probs=probs)

    def reinforce_loss(self, output, reward):
        """REINFORCE with an entropy bonus (and a moving-average baseline).

        Args:
            output (PolicyOutput): this batch's output (from the training forward).
            reward (Tensor): ``(B,)`` reward of each image's drawn timestep (no gradient).

        Returns:
            Tensor: scalar ``-mean((r - b) * log p(t)) - entropy_coef * mean(H)``; the
            baseline ``b`` (mean reward of earlier batches) is updated afterwards; ``b = 0``
            with ``baseline_momentum=None``.
        """
        reward = reward.detach().float()
        if self.baseline_momentum is None:
            return (-(reward * output.log_prob).mean()
                    - self.entropy_coef * output.entropy.mean())
        if not self.baseline_ready:
            self.reward_baseline.copy_(reward.mean())
            self.baseline_ready.fill_(True)
        advantage = reward - self.reward_baseline
        loss = -(advantage * output.log_prob).mean() - self.entropy_coef * output.entropy.mean()
        with torch.no_grad():
            self.reward_baseline.mul_(self.baseline_momentum).add_(
                (1 - self.baseline_momentum) * reward.mean())
        return loss

    def pop_mean_probs(self):
        """``(K,)`` mean distribution over the candidates since the last call (None if none)."""
        if int(self.probs_count) == 0:
            return None
        mean = self.probs_sum / self.probs_count
        self.probs_sum.zero_()
        self.probs_count.zero_()
        return mean
