"""The sample-grid numbers: Fréchet distance against independent formulas, confidence and
class entropy against their definitions, the classifier learning real images."""
import numpy as np
import pytest
import torch

from mmdiffssl.analysis.sample_quality import (SmallClassifier, classifier_outputs,
                                               frechet_distance, score_images,
                                               train_classifier)

pytestmark = pytest.mark.usefixtures('one_thread')


def test_frechet_distance_matches_independent_formulas():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)) + 0.5
    # tr((S_a S_b)^(1/2)) from the eigenvalues of the (non-symmetric) product itself
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    cross = np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real.clip(min=0)).sum()
    expected = (((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                - 2 * cross)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    # 1-D closed form: (m_a - m_b)^2 + (s_a - s_b)^2
    x, y = a[:, :1], b[:, :1]
    closed = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
    assert frechet_distance(x, y) == pytest.approx(closed, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r'\(N, D\) and \(M, D\)'):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match='at least 2 rows'):
        frechet_distance(np.zeros((1, 3)), np.zeros((4, 3)))


def test_classifier_learns_and_scores_follow_their_definitions():
    # two classes that differ by brightness: a classifier that learns reaches ~100%
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(256) % 2
    images = (torch.rand(256, 1, 32, 32, generator=gen) * 0.5 - 0.75 + labels[:, None, None,
                                                                              None] * 1.0)
    model = train_classifier(images, labels, epochs=3, lr=5e-3, batch_size=32, width=4)
    probs, feats = classifier_outputs(model, images)
    assert probs.shape == (256, 2) and feats.shape == (256, 16)
    assert (probs.argmax(1) == labels.numpy()).mean() > 0.95
    scores = score_images(model, images.expand(-1, 3, -1, -1), feats)   # 3 channels averaged
    assert scores['confidence'] == pytest.approx(probs.max(1).mean(), rel=1e-6)
    hist = np.bincount(probs.argmax(1), minlength=2) / 256
    assert scores['class_entropy'] == pytest.approx(-(hist * np.log(hist)).sum(), rel=1e-6)
    # the same images: 0 up to the round-off of a rank-deficient covariance (dead ReLUs)
    assert scores['frechet'] == pytest.approx(0, abs=1e-4) and scores['num_images'] == 256
    one_class = score_images(model, images[labels == 1], feats)
    assert one_class['class_entropy'] < 0.1 and one_class['frechet'] > 0.01


def test_classifier_rejects_bad_input():
    with pytest.raises(ValueError, match=r'\(B, 1 or 3, 32, 32\)'):
        SmallClassifier()(torch.zeros(2, 2, 32, 32))
