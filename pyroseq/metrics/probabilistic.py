"""Scores of probabilistic forecasts and samples: CRPS and energy score (wrapping
:mod:`pyro.ops.stats`), a histogram Jensen-Shannon divergence to a known density, and kernel MMD."""

import math

import torch
from pyro.ops.stats import crps_empirical, energy_score_empirical

__all__ = ["crps", "energy_score", "jsd_histogram", "mmd"]


def _check_samples(name, samples, min_dim):
    if not torch.is_tensor(samples):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(samples).__name__}")
    if samples.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dims, got shape {tuple(samples.shape)}")
    if samples.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one sample, got shape {tuple(samples.shape)}")
    if not torch.isfinite(samples).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def crps(samples, truth, reduce=True):
    r"""Continuous ranked probability score :math:`\mathbb{E}|X - y| - \tfrac12\mathbb{E}|X - X'|` of
    an empirical forecast, elementwise (:func:`pyro.ops.stats.crps_empirical`). Lower is better.

    :param torch.Tensor samples: forecast samples of shape ``(S,) + truth.shape``, e.g. ``(S, N, H, C)``.
    :param torch.Tensor truth: observations, e.g. ``(N, H, C)``; NaN entries (missing) are ignored.
    :param bool reduce: return the mean over observed entries (a 0-dim tensor) instead of the
        elementwise scores (NaN where ``truth`` is missing).
    :returns: a 0-dim tensor, or a tensor of ``truth``'s shape.
    """
    _check_samples("samples", samples, 1)
    if not torch.is_tensor(truth) or samples.shape[1:] != truth.shape:
        raise ValueError(
            f"samples must have shape (S,) + truth.shape, got {tuple(samples.shape)} and "
            f"{tuple(truth.shape) if torch.is_tensor(truth) else truth}"
        )
    observed = torch.isfinite(truth)
    if not observed.any():
        raise ValueError("truth has no finite entries")
    scores = crps_empirical(samples, torch.where(observed, truth, torch.zeros_like(truth)))
    scores = torch.where(observed, scores, torch.full_like(scores, math.nan))
    return scores[observed].mean() if reduce else scores


def energy_score(samples, truth, reduce=True):
    r"""Energy score :math:`\mathbb{E}\|X - y\| - \tfrac12\mathbb{E}\|X - X'\|` of multivariate
    forecasts (:func:`pyro.ops.stats.energy_score_empirical`): every series' whole forecast (e.g. all
    ``H x C`` values) is one vector. Lower is better.

    :param torch.Tensor samples: forecast samples of shape ``(S, N) + event_shape``, e.g. ``(S, N, H, C)``.
    :param torch.Tensor truth: observations of shape ``(N,) + event_shape``; must be finite.
    :param bool reduce: return the mean over series instead of the per-series scores.
    :returns: a 0-dim tensor, or a tensor of shape ``(N,)``.
    """
    _check_samples("samples", samples, 2)
    if not torch.is_tensor(truth) or samples.shape[1:] != truth.shape:
        raise ValueError(
            f"samples must have shape (S,) + truth.shape, got {tuple(samples.shape)} and "
            f"{tuple(truth.shape) if torch.is_tensor(truth) else truth}"
        )
    if not torch.isfinite(truth).all():
        raise ValueError("truth contains NaN or infinite values (the energy score needs complete vectors)")
    S, N = samples.shape[:2]
    pred = samples.reshape(S, N, -1).transpose(0, 1)  # (N, S, D)
    scores = energy_score_empirical(pred, truth.reshape(N, -1), pred_batch_size=256)
    return scores.mean() if reduce else scores


def _bin_masses(density, edges):
    """Probability of every bin of ``edges`` plus two overflow bins (below, above)."""
    edges = edges.double()
    try:
        cdf = density.cdf(edges)
    except NotImplementedError:
        cdf = None
    if cdf is not None:
        inner = (cdf[1:] - cdf[:-1]).clamp(min=0)
        return torch.cat([cdf[:1], inner, (1 - cdf[-1:]).clamp(min=0)])
    # Midpoint rule on the bins, with no tail mass (only for densities without a cdf).
    centres = 0.5 * (edges[1:] + edges[:-1])
    inner = density.log_prob(centres).exp() * (edges[1:] - edges[:-1])
    return torch.cat([inner.new_zeros(1), inner, inner.new_zeros(1)])


def jsd_histogram(samples, density, bins=200, range=(-10.0, 10.0)):
    r"""Jensen-Shannon divergence (in nats, between 0 and :math:`\log 2`) between the histogram of
    univariate ``samples`` and a known ``density`` discretised on the same bins:

    .. math:: \mathrm{JSD}(p, q) = \tfrac12\mathrm{KL}(p\,\|\,m) + \tfrac12\mathrm{KL}(q\,\|\,m),
        \quad m = \tfrac12(p + q).

    Two overflow bins collect the mass below and above ``range``, so samples far from the density
    are penalised rather than dropped.

    :param torch.Tensor samples: samples of any shape (flattened).
    :param density: a univariate distribution with ``cdf`` (exact bin masses) or ``log_prob``
        (midpoint rule), e.g. :func:`~pyroseq.data.bimodal_centred_density`.
    :param int bins: number of equal-width bins in ``range``.
    :param tuple range: ``(low, high)`` of the histogram.
    :returns: a float.
    """
    _check_samples("samples", samples, 1)
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    low, high = float(range[0]), float(range[1])
    if not low < high:
        raise ValueError(f"range must satisfy low < high, got {range!r}")
    values = samples.detach().reshape(-1).double()
    edges = torch.linspace(low, high, int(bins) + 1, dtype=torch.float64)
    inner = torch.histc(values.clamp(low, high), bins=int(bins), min=low, max=high)
    counts = torch.cat([(values < low).sum().reshape(1).double(), inner.double(),
                        (values > high).sum().reshape(1).double()])
    # histc counts clamped outliers in the edge bins; move them to the overflow bins.
    counts[1] -= counts[0]
    counts[-2] -= counts[-1]
    p = counts / counts.sum()
    q = _bin_masses(density, edges)
    q = q / q.sum()
    m = 0.5 * (p + q)

    def kl(a, b):
        a_pos = a > 0
        return (a[a_pos] * (a[a_pos] / b[a_pos]).log()).sum()

    return float(0.5 * kl(p, m) + 0.5 * kl(q, m))


def mmd(x, y, bandwidth=None, max_samples=4000, generator=None):
    r"""Unbiased estimate of the squared maximum mean discrepancy with a Gaussian kernel
    :math:`k(a, b) = \exp(-\|a - b\|^2 / (2 h^2))` between samples ``x`` and ``y``.

    :param torch.Tensor x: samples of shape ``(n, D)`` (or ``(n,)`` for univariate data).
    :param torch.Tensor y: samples of shape ``(m, D)`` (or ``(m,)``).
    :param float bandwidth: kernel bandwidth ``h``; default: the median pairwise distance of the
        pooled samples (median heuristic).
    :param int max_samples: random subsample size per argument (the cost is quadratic).
    :param torch.Generator generator: generator of the subsampling.
    :returns: a float (can be slightly negative: the estimate is unbiased).
    """
    x = x.reshape(x.shape[0], -1) if torch.is_tensor(x) and x.dim() == 1 else x
    y = y.reshape(y.shape[0], -1) if torch.is_tensor(y) and y.dim() == 1 else y
    _check_samples("x", x, 2)
    _check_samples("y", y, 2)
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have shapes (n, D) and (m, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("x and y need at least two samples each")

    def subsample(a):
        if a.shape[0] <= max_samples:
            return a
        return a[torch.randperm(a.shape[0], generator=generator)[:max_samples]]

    x, y = subsample(x.detach().double()), subsample(y.detach().double())
    dxx, dyy, dxy = torch.cdist(x, x).pow(2), torch.cdist(y, y).pow(2), torch.cdist(x, y).pow(2)
    if bandwidth is None:
        pooled = torch.cat([dxx.reshape(-1), dyy.reshape(-1), dxy.reshape(-1)])
        bandwidth = float(pooled[pooled > 0].median().sqrt()) if (pooled > 0).any() else 1.0
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    g = -0.5 / bandwidth**2
    n, m = x.shape[0], y.shape[0]
    kxx = ((dxx * g).exp().sum() - n) / (n * (n - 1))
    kyy = ((dyy * g).exp().sum() - m) / (m * (m - 1))
    kxy = (dxy * g).exp().mean()
    return float(kxx + kyy - 2 * kxy)
