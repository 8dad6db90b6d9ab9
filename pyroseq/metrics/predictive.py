"""Predictive score (train on synthetic, test on real): one-step-ahead prediction of the last
channel from the others with a post-hoc GRU."""

import numpy as np
import torch
from torch import nn

from .score import MetricResult, check_real_fake, seeded

__all__ = ["GRUPredictor", "predictive_score"]


class GRUPredictor(nn.Module):
    """
    One-layer GRU followed by a linear map and a sigmoid at every time step.

    :param int input_dim: Number of input channels (``C - 1`` in the protocol).
    :param int hidden_dim: GRU width; the protocol uses ``max(1, C // 2)``.
    """

    def __init__(self, input_dim, hidden_dim):
        super().__init__()
        self.gru = nn.GRU(input_dim, hidden_dim, batch_first=True)
        self.head = nn.Linear(hidden_dim, 1)

    def forward(self, x):
        """
        :param torch.Tensor x: Inputs of shape ``(B, T, input_dim)``.
        :returns: Predictions in ``(0, 1)`` of shape ``(B, T)``.
        """
        h, _ = self.gru(x)
        return torch.sigmoid(self.head(h).squeeze(-1))


def _inputs_targets(x):
    # Channels 0..C-2 at steps 0..T-2 predict channel C-1 at steps 1..T-1.
    return x[:, :-1, :-1], x[:, 1:, -1]


def _one_repeat(real, fake, iterations, batch_size, lr, hidden_dim):
    fake_in, fake_out = _inputs_targets(fake)
    model = GRUPredictor(fake_in.shape[-1], hidden_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(iterations):
        idx = torch.randperm(fake_in.shape[0])[:batch_size]
        loss = (model(fake_in[idx]) - fake_out[idx]).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    real_in, real_out = _inputs_targets(real)
    with torch.no_grad():
        total = sum((model(x) - y).abs().sum().item()
                    for x, y in zip(real_in.split(4096), real_out.split(4096)))
    return total / real_out.numel()  # = mean over windows of each window's MAE (equal lengths)


def predictive_score(real, fake, repeats=5, seed=0, iterations=5000, batch_size=128, lr=1e-3,
                     hidden_dim=None):
    """
    Predictive score (TSTR, lower is better): a :class:`GRUPredictor` with
    ``hidden_dim = max(1, C // 2)`` (the protocol's ``floor(C / 2)``, kept at least 1) is trained on
    the *synthetic* windows to predict channel ``C - 1`` at steps ``1..L-1`` from channels
    ``0..C-2`` at steps ``0..L-2`` (L1 loss, Adam, ``iterations`` batches of ``batch_size`` drawn
    without replacement within a batch). The score is its mean absolute error on all real windows.

    :param real: Real windows of shape ``(N_real, L, C)`` in ``[0, 1]``, ``L >= 2``, ``C >= 2``.
    :type real: numpy.ndarray or torch.Tensor
    :param fake: Synthetic windows of shape ``(N_fake, L, C)`` in ``[0, 1]``.
    :type fake: numpy.ndarray or torch.Tensor
    :param int repeats: Number of repeats (new predictor each).
    :param int seed: Seed; repeat ``r`` uses an independent stream derived from it.
    :param int iterations: Training steps (protocol: 5000).
    :param int batch_size: Synthetic windows per step (protocol: 128).
    :param float lr: Adam learning rate.
    :param int hidden_dim: GRU width; defaults to ``max(1, C // 2)``.
    :rtype: ~pyroseq.metrics.score.MetricResult
    :raises ValueError: On invalid inputs (see :func:`~pyroseq.metrics.score.check_real_fake`),
        ``C < 2`` or ``L < 2``.
    """
    real, fake = check_real_fake(real, fake, min_samples=1, dtype=np.float32)
    if real.shape[-1] < 2:
        raise ValueError("real and fake need at least 2 channels for predictive_score, got {}"
                         .format(real.shape[-1]))
    if real.shape[1] < 2:
        raise ValueError("real and fake need length >= 2 for predictive_score, got {}"
                         .format(real.shape[1]))
    if hidden_dim is None:
        hidden_dim = max(1, real.shape[-1] // 2)
    real = torch.as_tensor(real, dtype=torch.float32)
    fake = torch.as_tensor(fake, dtype=torch.float32)
    values = []
    for repeat_seed in np.random.SeedSequence(seed).generate_state(repeats):
        with seeded(int(repeat_seed)):
            values.append(_one_repeat(real, fake, iterations, batch_size, lr, hidden_dim))
    return MetricResult(values, name="predictive_score")
