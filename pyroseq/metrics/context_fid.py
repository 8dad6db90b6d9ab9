"""Context-FID: the Frechet distance between TS2Vec representations of real and synthetic windows.

Context-FID (Jeha et al., "PSA-GAN", ICLR 2022; the protocol of Diffusion-TS) trains a TS2Vec
encoder on the real windows, represents every real and synthetic window by its time-max-pooled
features, fits a Gaussian to each set of representations and reports the Frechet distance

.. math:: \\|\\mu_r - \\mu_f\\|^2 + \\mathrm{tr}(\\Sigma_r + \\Sigma_f - 2 (\\Sigma_r \\Sigma_f)^{1/2}).
"""

import numpy as np
import scipy.linalg
import torch

from .score import MetricResult, check_real_fake, seeded
from .ts2vec import encode_windows, train_ts2vec

__all__ = ["frechet_distance", "context_fid"]


def _check_gaussians(mu1, sigma1, mu2, sigma2):
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError("mean/covariance shapes do not match: {}, {}, {}, {}".format(
            mu1.shape, sigma1.shape, mu2.shape, sigma2.shape))
    return mu1, sigma1, mu2, sigma2


def _trace_sqrt_product_eigh(sigma1, sigma2):
    # tr (S1 S2)^{1/2} = tr (S1^{1/2} S2 S1^{1/2})^{1/2}: the eigenvalues of S1 S2 are those of the
    # symmetric PSD matrix S1^{1/2} S2 S1^{1/2}, so two symmetric eigendecompositions suffice (real,
    # no complex round-off, and torch's thread setting applies).
    s1, s2 = torch.as_tensor(sigma1), torch.as_tensor(sigma2)
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    w, v = torch.linalg.eigh(s1)
    half = (v * w.clamp(min=0).sqrt()) @ v.T
    inner = half @ s2 @ half
    return torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum().item()


def _trace_sqrt_product_sqrtm(sigma1, sigma2, eps):
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = eps * np.eye(sigma1.shape[0])
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    # Round-off gives small imaginary parts when S1 S2 has (near-)zero eigenvalues; the exact
    # square root of a product of PSD matrices has a real trace.
    return float(np.trace(np.real(covmean)))


def frechet_distance(mu1, sigma1, mu2, sigma2, method="eigh", eps=1e-6):
    """
    Frechet (2-Wasserstein) distance between the Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``,
    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^{1/2})``.

    With ``method="eigh"`` (default) the trace term is computed from two symmetric
    eigendecompositions in torch (float64), which is exact for PSD covariances, free of complex
    round-off and respects :func:`torch.set_num_threads`. ``method="sqrtm"`` uses
    :func:`scipy.linalg.sqrtm` of the product as the reference implementations do: if the root is
    not finite, ``eps`` times the identity is added to both covariances, and imaginary round-off
    is discarded. (Note that scipy's BLAS threads are not governed by torch's setting; on a busy
    machine set ``OPENBLAS_NUM_THREADS``.)

    :param numpy.ndarray mu1: Mean of shape ``(D,)``.
    :param numpy.ndarray sigma1: Covariance of shape ``(D, D)``.
    :param numpy.ndarray mu2: Mean of shape ``(D,)``.
    :param numpy.ndarray sigma2: Covariance of shape ``(D, D)``.
    :param str method: ``"eigh"`` or ``"sqrtm"``.
    :param float eps: Diagonal offset for ``method="sqrtm"`` when the square root is not finite.
    :rtype: float
    """
    mu1, sigma1, mu2, sigma2 = _check_gaussians(mu1, sigma1, mu2, sigma2)
    if method == "eigh":
        trace_sqrt = _trace_sqrt_product_eigh(sigma1, sigma2)
    elif method == "sqrtm":
        trace_sqrt = _trace_sqrt_product_sqrtm(sigma1, sigma2, eps)
    else:
        raise ValueError("method must be 'eigh' or 'sqrtm', got {!r}".format(method))
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt
    return float(max(value, 0.0))  # round-off can make identical Gaussians slightly negative


def _mean_cov(x):
    x = torch.as_tensor(x, dtype=torch.float64)
    return x.mean(0).numpy(), torch.cov(x.T).reshape(x.shape[1], x.shape[1]).numpy()


def context_fid(real, fake, repeats=5, seed=0, iterations=600, batch_size=8, lr=1e-3,
                method="eigh", **encoder_kwargs):
    """
    Context-FID score (lower is better), repeated ``repeats`` times, each with a freshly trained
    TS2Vec encoder (:func:`~pyroseq.metrics.ts2vec.train_ts2vec`) fitted to all real windows.
    Representations of all real and all fake windows enter :func:`frechet_distance` (empirical
    means and ``ddof=1`` covariances). All heavy work runs in torch, so
    :func:`torch.set_num_threads` governs it.

    :param real: Real windows of shape ``(N_real, L, C)`` in ``[0, 1]``, ``L >= 2``.
    :type real: numpy.ndarray or torch.Tensor
    :param fake: Synthetic windows of shape ``(N_fake, L, C)`` in ``[0, 1]``.
    :type fake: numpy.ndarray or torch.Tensor
    :param int repeats: Number of repeats.
    :param int seed: Seed; repeat ``r`` uses an independent stream derived from it.
    :param int iterations: TS2Vec training iterations (protocol: 600).
    :param int batch_size: TS2Vec batch size (protocol: 8).
    :param float lr: TS2Vec learning rate.
    :param str method: Matrix square-root method of :func:`frechet_distance`.
    :param encoder_kwargs: Passed to :class:`~pyroseq.metrics.ts2vec.TS2VecEncoder`.
    :rtype: ~pyroseq.metrics.score.MetricResult
    :raises ValueError: On invalid inputs (see :func:`~pyroseq.metrics.score.check_real_fake`).
    """
    real, fake = check_real_fake(real, fake, dtype=np.float32)
    if real.shape[1] < 2:
        raise ValueError("real and fake must have length >= 2 for context_fid, got {}".format(
            real.shape[1]))
    seeds = np.random.SeedSequence(seed).generate_state(repeats)
    values = []
    for repeat_seed in seeds:
        with seeded(int(repeat_seed)):
            encoder = train_ts2vec(real, iterations=iterations, batch_size=batch_size, lr=lr,
                                   **encoder_kwargs)
        rep_real = encode_windows(encoder, real)
        rep_fake = encode_windows(encoder, fake)
        values.append(frechet_distance(*_mean_cov(rep_real), *_mean_cov(rep_fake), method=method))
    return MetricResult(values, name="context_fid")
