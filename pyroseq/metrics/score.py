"""Repeated-score results and the input checks shared by the sample-quality metrics.

The metrics of the Diffusion-TS / TimeGAN protocol (context-FID, correlational, discriminative and
predictive scores) are each repeated a few times with different random seeds and reported as a
mean with a 95% Student-t half-width. :class:`MetricResult` holds such a result and
:func:`check_real_fake` validates the pair of window arrays every metric receives.
"""

import math
from contextlib import contextmanager

import numpy as np
import scipy.stats
import torch

__all__ = ["MetricResult", "check_real_fake", "seeded", "RANGE_TOLERANCE"]

#: How far outside ``[0, 1]`` an input value may lie before the metrics reject it. Min-max scaled
#: data lies exactly in ``[0, 1]``; generators and float32 round trips may overshoot slightly.
RANGE_TOLERANCE = 1e-3


class MetricResult:
    """
    The result of a metric repeated over several random seeds.

    :param values: The score of every repeat, shape ``(repeats,)``.
    :type values: numpy.ndarray or sequence of float
    :param str name: Name of the metric (used in the repr only).
    :param float confidence: Two-sided confidence level of :attr:`ci`.
    """

    def __init__(self, values, name="score", confidence=0.95):
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.size == 0:
            raise ValueError("values must contain at least one repeat, got an empty array")
        self.values = values
        self.name = name
        self.confidence = confidence

    @property
    def repeats(self):
        """Number of repeats."""
        return self.values.size

    @property
    def mean(self):
        """Mean of :attr:`values` (a float)."""
        return float(self.values.mean())

    @property
    def std(self):
        """Sample standard deviation of :attr:`values` (``ddof=1``; NaN for a single repeat)."""
        if self.repeats < 2:
            return math.nan
        return float(self.values.std(ddof=1))

    @property
    def ci(self):
        """
        Half-width of the two-sided Student-t confidence interval of the mean,
        ``t_{(1 + confidence) / 2, repeats - 1} * std / sqrt(repeats)``; NaN for a single repeat.
        """
        if self.repeats < 2:
            return math.nan
        q = scipy.stats.t.ppf(0.5 + self.confidence / 2, df=self.repeats - 1)
        return float(q * self.std / math.sqrt(self.repeats))

    def __float__(self):
        return self.mean

    def __str__(self):
        return "{:.4g} \u00b1 {:.2g}".format(self.mean, self.ci)

    def __repr__(self):
        return "MetricResult(name={!r}, mean={:.4g}, ci={:.2g}, repeats={})".format(
            self.name, self.mean, self.ci, self.repeats
        )


def _as_array(x, name):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        x = np.asarray(x)
    except Exception as e:  # ragged lists and other non-array input
        raise ValueError("{} must be an array of shape (N, L, C), got {}".format(name, e)) from e
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.number):
        raise ValueError("{} must hold real numbers, got dtype {}".format(name, x.dtype))
    if np.iscomplexobj(x):
        raise ValueError("{} must hold real numbers, got complex dtype {}".format(name, x.dtype))
    return x


def check_real_fake(real, fake, min_samples=2, tol=RANGE_TOLERANCE, dtype=np.float64):
    """
    Validate and convert the pair of window arrays a metric compares.

    Both arrays must have rank 3 ``(num_windows, length, channels)``, the same length and number of
    channels (the numbers of windows may differ), at least ``min_samples`` windows, only finite
    values, and values in ``[0, 1]`` up to ``tol`` (min-max scaled data, the convention of the
    field). Values within the tolerance are clipped to ``[0, 1]``.

    :param real: Real windows of shape ``(N_real, L, C)``.
    :type real: numpy.ndarray or torch.Tensor
    :param fake: Synthetic windows of shape ``(N_fake, L, C)``.
    :type fake: numpy.ndarray or torch.Tensor
    :param int min_samples: Minimum number of windows in each array.
    :param float tol: Allowed overshoot outside ``[0, 1]``.
    :param dtype: Floating dtype of the returned arrays.
    :returns: ``(real, fake)`` as C-contiguous numpy arrays of ``dtype``.
    :rtype: tuple
    :raises ValueError: If any of the conditions above fails; the message names the argument.
    """
    arrays = []
    for name, x in (("real", real), ("fake", fake)):
        x = _as_array(x, name)
        if x.ndim != 3:
            raise ValueError(
                "{} must have shape (num_windows, length, channels), got rank {} with shape {}".format(
                    name, x.ndim, tuple(x.shape)
                )
            )
        if x.shape[0] < min_samples:
            raise ValueError(
                "{} must contain at least {} windows, got {}".format(name, min_samples, x.shape[0])
            )
        if x.shape[1] < 1 or x.shape[2] < 1:
            raise ValueError("{} has an empty length or channel axis: shape {}".format(
                name, tuple(x.shape)))
        given = x
        x = np.ascontiguousarray(x, dtype=dtype)
        if not np.isfinite(x).all():
            raise ValueError("{} contains NaN or infinite values".format(name))
        lo, hi = float(x.min()), float(x.max())
        if lo < -tol or hi > 1 + tol:
            raise ValueError(
                "{} must be min-max scaled to [0, 1] (tolerance {}), got values in [{:.4g}, {:.4g}]"
                .format(name, tol, lo, hi)
            )
        # Clip in place when x is already a private copy; never modify the caller's array.
        private = not np.may_share_memory(x, given)
        arrays.append(np.clip(x, 0.0, 1.0, out=x if private else None))
    real, fake = arrays
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(
            "real and fake must have the same (length, channels), got {} and {}".format(
                tuple(real.shape[1:]), tuple(fake.shape[1:])
            )
        )
    return real, fake


@contextmanager
def seeded(seed):
    """
    Context manager running its body with torch's CPU generator seeded by ``seed`` and restoring
    the caller's generator state afterwards, so that metrics are reproducible without disturbing
    the global random stream.

    :param int seed: Seed for :func:`torch.manual_seed`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
