"""Context-FID: the Frechet distance between TS2Vec representations of real and synthetic windows.

Context-FID (Jeha et al., "PSA-GAN", ICLR 2022; the protocol of Diffusion-TS) trains a TS2Vec
encoder on the real windows, represents every real and synthetic window by its time-max-pooled
features, fits a Gaussian to each set of representations and reports the Frechet distance

.. math:: \\|\\mu_r - \\mu_f\\|^2 + \\mathrm{tr}(\\Sigma_r + \\Sigma_f - 2 (\\Sigma_r \\Sigma_f)^{1/2}).
"""

import numpy as np
import scipy.linalg

from .score import MetricResult, check_real_fake, seeded
from .ts2vec import encode_windows, train_ts2vec

__all__ = ["frechet_distance", "context_fid"]


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """
    Frechet (2-Wasserstein) distance between the Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    The matrix square root is :func:`scipy.linalg.sqrtm`. If it is not finite (singular product),
    ``eps`` times the identity is added to both covariances and it is recomputed. Imaginary parts,
    which arise from round-off when the product has (near-)zero eigenvalues, are discarded.

    :param numpy.ndarray mu1: Mean of shape ``(D,)``.
    :param numpy.ndarray sigma1: Covariance of shape ``(D, D)``.
    :param numpy.ndarray mu2: Mean of shape ``(D,)``.
    :param numpy.ndarray sigma2: Covariance of shape ``(D, D)``.
    :param float eps: Diagonal offset used when the square root is not finite.
    :rtype: float
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError("mean/covariance shapes do not match: {}, {}, {}, {}".format(
            mu1.shape, sigma1.shape, mu2.shape, sigma2.shape))
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = eps * np.eye(sigma1.shape[0])
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return float(max(value, 0.0))  # round-off can make identical Gaussians slightly negative


def context_fid(real, fake, repeats=5, seed=0, iterations=600, batch_size=8, lr=1e-3,
                **encoder_kwargs):
    """
    Context-FID score (lower is better), repeated ``repeats`` times, each with a freshly trained
    TS2Vec encoder (:func:`~pyroseq.metrics.ts2vec.train_ts2vec`) fitted to all real windows.
    Representations of all real and all fake windows enter :func:`frechet_distance` (empirical
    means and ``ddof=1`` covariances).

    :param real: Real windows of shape ``(N_real, L, C)`` in ``[0, 1]``, ``L >= 2``.
    :type real: numpy.ndarray or torch.Tensor
    :param fake: Synthetic windows of shape ``(N_fake, L, C)`` in ``[0, 1]``.
    :type fake: numpy.ndarray or torch.Tensor
    :param int repeats: Number of repeats.
    :param int seed: Seed; repeat ``r`` uses an independent stream derived from it.
    :param int iterations: TS2Vec training iterations (protocol: 600).
    :param int batch_size: TS2Vec batch size (protocol: 8).
    :param float lr: TS2Vec learning rate.
    :param encoder_kwargs: Passed to :class:`~pyroseq.metrics.ts2vec.TS2VecEncoder`.
    :rtype: ~pyroseq.metrics.score.MetricResult
    :raises ValueError: On invalid inputs (see :func:`~pyroseq.metrics.score.check_real_fake`).
    """
    real, fake = check_real_fake(real, fake)
    if real.shape[1] < 2:
        raise ValueError("real and fake must have length >= 2 for context_fid, got {}".format(
            real.shape[1]))
    real32, fake32 = real.astype(np.float32), fake.astype(np.float32)
    seeds = np.random.SeedSequence(seed).generate_state(repeats)
    values = []
    for repeat_seed in seeds:
        with seeded(int(repeat_seed)):
            encoder = train_ts2vec(real32, iterations=iterations, batch_size=batch_size, lr=lr,
                                   **encoder_kwargs)
        rep_real = encode_windows(encoder, real32)
        rep_fake = encode_windows(encoder, fake32)
        values.append(frechet_distance(rep_real.mean(0), np.cov(rep_real, rowvar=False),
                                       rep_fake.mean(0), np.cov(rep_fake, rowvar=False)))
    return MetricResult(values, name="context_fid")
