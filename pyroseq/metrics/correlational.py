"""Correlational score: how well synthetic windows reproduce the lag-0 cross-channel correlations."""

import numpy as np

from .score import MetricResult, check_real_fake

__all__ = ["cross_correlations", "correlational_score"]


def cross_correlations(x):
    """
    Lag-0 cross-correlations of all channel pairs ``i < j``: the data are standardised per channel
    with the mean and (population) standard deviation pooled over all windows and time steps, then
    ``x_i * x_j`` is averaged over time steps and windows.

    :param numpy.ndarray x: Windows of shape ``(N, L, C)``.
    :returns: Array of shape ``(C * (C - 1) // 2,)`` in the order of :func:`numpy.triu_indices`
        with ``k=1``.
    :rtype: numpy.ndarray
    """
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(-1, x.shape[-1])
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    # A channel that is constant within the subset (up to round-off) has no correlation with
    # anything; its standardised values are set to zero instead of dividing by zero.
    constant = std <= 1e-12 * np.maximum(1.0, np.abs(mean))
    z = (flat - mean) / np.where(constant, np.inf, std)
    i, j = np.triu_indices(x.shape[-1], k=1)
    return (z[:, i] * z[:, j]).mean(axis=0)  # elementwise, so no BLAS threads are involved


def correlational_score(real, fake, repeats=5, seed=0, subset_size=None):
    """
    Correlational score (lower is better): on random subsets of real and synthetic windows, the
    sum over channel pairs of the absolute difference of their lag-0 cross-correlations
    (:func:`cross_correlations`), divided by 10, as in the Diffusion-TS protocol.

    Each repeat draws ``subset_size`` indices with replacement (default ``N_real // 5``). When real
    and fake hold the same number of windows the *same* indices are used for both; for independent
    real and fake sets this has the same distribution as independent draws, and it makes the score
    of identical inputs exactly zero. Otherwise the fake indices are drawn separately.

    :param real: Real windows of shape ``(N_real, L, C)`` in ``[0, 1]``.
    :type real: numpy.ndarray or torch.Tensor
    :param fake: Synthetic windows of shape ``(N_fake, L, C)`` in ``[0, 1]``.
    :type fake: numpy.ndarray or torch.Tensor
    :param int repeats: Number of repeats.
    :param int seed: Seed of the subset draws.
    :param int subset_size: Windows per subset; defaults to ``max(1, N_real // 5)``.
    :rtype: ~pyroseq.metrics.score.MetricResult
    :raises ValueError: On invalid inputs (see :func:`~pyroseq.metrics.score.check_real_fake`)
        or fewer than two channels.
    """
    real, fake = check_real_fake(real, fake, min_samples=1)
    if real.shape[-1] < 2:
        raise ValueError("real and fake need at least 2 channels for correlational_score, got {}"
                         .format(real.shape[-1]))
    if subset_size is None:
        subset_size = max(1, real.shape[0] // 5)
    if subset_size < 1:
        raise ValueError("subset_size must be positive, got {}".format(subset_size))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(repeats):
        idx_real = rng.integers(0, real.shape[0], subset_size)
        if fake.shape[0] == real.shape[0]:
            idx_fake = idx_real
        else:
            idx_fake = rng.integers(0, fake.shape[0], subset_size)
        diff = cross_correlations(real[idx_real]) - cross_correlations(fake[idx_fake])
        values.append(np.abs(diff).sum() / 10.0)
    return MetricResult(values, name="correlational_score")
