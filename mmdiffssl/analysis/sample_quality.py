"""Numbers for a grid of generated images, from a small classifier of the same data.

A small CNN (:class:`SmallClassifier`) is trained once on real images; generated images are
then scored by it as real ones are:

- ``confidence``: the mean max-softmax probability (high when the classifier recognises a
  class in each image);
- ``class_entropy``: the entropy (nats) of the histogram of predicted classes (``log K`` when
  every class is generated equally often, 0 when all images look like one class);
- ``frechet``: the Fréchet distance between Gaussians fitted to the classifier's penultimate
  features of the generated images and of a reference set (FID's formula, in this
  classifier's feature space instead of Inception's).

Each number means something only next to the same number for real images of the same count
(:func:`score_images` of held-out real images), which is how a report shows them.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class SmallClassifier(nn.Module):
    """A three-conv CNN for 1-channel 32x32 images in [-1, 1].

    Shapes: input ``(B, 1, 32, 32)`` (or ``(B, 3, 32, 32)``: the channels are averaged);
    :meth:`features` ``(B, width * 4)`` (the penultimate layer); ``forward``
    ``(B, num_classes)`` logits.
    """

    def __init__(self, num_classes=10, width=16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width * 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width * 2, width * 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(width * 2 * 4 * 4, width * 4), nn.ReLU())
        self.fc = nn.Linear(width * 4, num_classes)

    def features(self, x):
        if x.dim() != 4 or x.shape[1] not in (1, 3) or x.shape[2:] != (32, 32):
            raise ValueError(f'SmallClassifier expects (B, 1 or 3, 32, 32) images, got '
                             f'{tuple(x.shape)}')
        return self.body(x.mean(1, keepdim=True))

    def forward(self, x):
        return self.fc(self.features(x))


def train_classifier(images, labels, epochs=2, lr=2e-3, batch_size=128, seed=0, width=16):
    """Train a :class:`SmallClassifier` with Adam (deterministic at a fixed thread count).

    Args:
        images (Tensor): ``(N, C, 32, 32)`` float in [-1, 1]; ``labels`` ``(N,)`` int64.

    Returns:
        SmallClassifier: in eval mode.
    """
    torch.manual_seed(seed)
    model = SmallClassifier(int(labels.max()) + 1, width)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def classifier_outputs(model, images, batch_size=500):
    """``(probabilities (N, K), features (N, D))`` of ``images`` ``(N, C, 32, 32)``, float64."""
    probs, feats = [], []
    for start in range(0, len(images), batch_size):
        f = model.features(images[start:start + batch_size])
        feats.append(f.double())
        probs.append(F.softmax(model.fc(f), 1).double())
    return torch.cat(probs).numpy(), torch.cat(feats).numpy()


def frechet_distance(feats_a, feats_b):
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula).

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, the matrix square root's trace
    from the eigenvalues of ``S_a^(1/2) S_b S_a^(1/2)`` (symmetric, so exact in float64).

    Args:
        feats_a (ndarray): ``(N, D)``; ``feats_b`` ``(M, D)``; N, M >= 2.

    Returns:
        float
    """
    feats_a, feats_b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f'frechet_distance needs (N, D) and (M, D) features, got '
                         f'{feats_a.shape} and {feats_b.shape}')
    if min(len(feats_a), len(feats_b)) < 2:
        raise ValueError('frechet_distance needs at least 2 rows in each feature set')
    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    # atleast_2d: np.cov of one feature is a 0-d array
    cov_a = np.atleast_2d(np.cov(feats_a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(feats_b, rowvar=False))
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(vals.clip(min=0))) @ vecs.T
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(min=0)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                 - 2 * np.sqrt(cross).sum())


def score_images(model, images, reference_feats):
    """The three numbers of the module docstring for ``images`` ``(N, C, 32, 32)`` in [-1, 1].

    Args:
        reference_feats (ndarray): ``(M, D)`` classifier features of the reference images
            (:func:`classifier_outputs`), e.g. the test set.

    Returns:
        dict: ``confidence``, ``class_entropy`` (nats), ``frechet``, ``num_images``.
    """
    probs, feats = classifier_outputs(model, images)
    hist = np.bincount(probs.argmax(1), minlength=probs.shape[1]) / len(probs)
    nonzero = hist[hist > 0]
    return dict(confidence=float(probs.max(1).mean()),
                class_entropy=float(-(nonzero * np.log(nonzero)).sum()) + 0.0,   # no -0.0
                frechet=frechet_distance(feats, reference_feats), num_images=len(images))
