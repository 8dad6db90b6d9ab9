"""Discriminative score: how well a post-hoc GRU classifier tells real from synthetic windows."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .score import MetricResult, check_real_fake, seeded

__all__ = ["GRUClassifier", "discriminative_score"]


class GRUClassifier(nn.Module):
    """
    One-layer GRU whose last hidden state is mapped linearly to a logit (real vs. synthetic).

    :param int channels: Number of input channels ``C``.
    :param int hidden_dim: GRU width; the protocol uses ``max(1, C // 2)``.
    """

    def __init__(self, channels, hidden_dim):
        super().__init__()
        self.gru = nn.GRU(channels, hidden_dim, batch_first=True)
        self.head = nn.Linear(hidden_dim, 1)

    def forward(self, x):
        """
        :param torch.Tensor x: Windows of shape ``(B, L, C)``.
        :returns: Logits of shape ``(B,)``.
        """
        _, last = self.gru(x)
        return self.head(last[-1]).squeeze(-1)


def _split(num, train_fraction):
    perm = torch.randperm(num)
    cut = int(num * train_fraction)
    return perm[:cut], perm[cut:]


def _draw(num, batch_size):
    return torch.randperm(num)[:batch_size]  # without replacement within a batch


@torch.no_grad()
def _predict_real(model, x, chunk_size=4096):
    return torch.cat([model(chunk) > 0 for chunk in x.split(chunk_size)])


def _one_repeat(real, fake, iterations, batch_size, lr, hidden_dim, train_fraction):
    real_train, real_test = _split(real.shape[0], train_fraction)
    fake_train, fake_test = _split(fake.shape[0], train_fraction)
    if min(len(real_train), len(real_test), len(fake_train), len(fake_test)) == 0:
        raise ValueError("real and fake need enough windows for a non-empty {:.0%}/{:.0%} split"
                         .format(train_fraction, 1 - train_fraction))
    real_train, real_test = real[real_train], real[real_test]
    fake_train, fake_test = fake[fake_train], fake[fake_test]
    model = GRUClassifier(real.shape[-1], hidden_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(iterations):
        xr = real_train[_draw(len(real_train), batch_size)]
        xf = fake_train[_draw(len(fake_train), batch_size)]
        logits = model(torch.cat([xr, xf]))
        # Sum of the mean losses on the real and on the synthetic half, as in TimeGAN.
        loss = (F.binary_cross_entropy_with_logits(logits[:len(xr)], torch.ones(len(xr)))
                + F.binary_cross_entropy_with_logits(logits[len(xr):], torch.zeros(len(xf))))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    correct = _predict_real(model, real_test).sum() + (~_predict_real(model, fake_test)).sum()
    accuracy = correct.item() / (len(real_test) + len(fake_test))
    return abs(0.5 - accuracy)


def discriminative_score(real, fake, repeats=5, seed=0, iterations=2000, batch_size=128, lr=1e-3,
                         hidden_dim=None, train_fraction=0.8):
    """
    Discriminative score (lower is better; 0 means indistinguishable, 0.5 perfectly separable).

    Real and synthetic windows are each split at random into ``train_fraction`` training and the
    rest test windows. A :class:`GRUClassifier` with ``hidden_dim = max(1, C // 2)`` (the protocol's
    ``floor(C / 2)``, kept at least 1 so univariate data work) is trained with Adam for
    ``iterations`` steps, each on ``batch_size`` real plus ``batch_size`` synthetic training windows
    (binary cross-entropy, real = 1). The score is ``|0.5 - accuracy|`` on the union of both test
    sets (threshold at probability 0.5). Sequences are fed unpacked (all windows have length L).

    :param real: Real windows of shape ``(N_real, L, C)`` in ``[0, 1]``.
    :type real: numpy.ndarray or torch.Tensor
    :param fake: Synthetic windows of shape ``(N_fake, L, C)`` in ``[0, 1]``.
    :type fake: numpy.ndarray or torch.Tensor
    :param int repeats: Number of repeats (new split and classifier each).
    :param int seed: Seed; repeat ``r`` uses an independent stream derived from it.
    :param int iterations: Training steps (protocol: 2000).
    :param int batch_size: Real (and synthetic) windows per step (protocol: 128).
    :param float lr: Adam learning rate.
    :param int hidden_dim: GRU width; defaults to ``max(1, C // 2)``.
    :param float train_fraction: Fraction of each set used for training.
    :rtype: ~pyroseq.metrics.score.MetricResult
    :raises ValueError: On invalid inputs (see :func:`~pyroseq.metrics.score.check_real_fake`).
    """
    real, fake = check_real_fake(real, fake, dtype=np.float32)
    if not 0 < train_fraction < 1:
        raise ValueError("train_fraction must lie in (0, 1), got {}".format(train_fraction))
    if hidden_dim is None:
        hidden_dim = max(1, real.shape[-1] // 2)
    real = torch.as_tensor(real, dtype=torch.float32)
    fake = torch.as_tensor(fake, dtype=torch.float32)
    values = []
    for repeat_seed in np.random.SeedSequence(seed).generate_state(repeats):
        with seeded(int(repeat_seed)):
            values.append(_one_repeat(real, fake, iterations, batch_size, lr, hidden_dim,
                                      train_fraction))
    return MetricResult(values, name="discriminative_score")
