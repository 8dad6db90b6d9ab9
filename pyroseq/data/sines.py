"""The Sines benchmark of TimeGAN / Diffusion-TS: independent sinusoids per window and channel."""

import math
import numbers

import numpy as np
import torch

__all__ = ["sines"]


def sines(num_samples=10000, length=24, channels=5, seed=0, dtype=torch.float32):
    """
    Generate the Sines data set: for every window ``n`` and channel ``c`` draw a frequency and a
    phase from ``Uniform(0, 0.1)`` and set ``x[n, t, c] = (sin(freq * t + phase) + 1) / 2`` for
    ``t = 0, ..., length - 1``, so that values lie in ``[0, 1]``.

    :param int num_samples: Number of windows ``N``.
    :param int length: Window length ``L``.
    :param int channels: Number of channels ``C``.
    :param int seed: Seed of a :func:`numpy.random.default_rng` generator (reproducible across
        platforms and independent of torch's global state).
    :param torch.dtype dtype: Output dtype.
    :returns: Windows of shape ``(N, L, C)`` with values in ``[0, 1]``.
    :rtype: torch.Tensor
    """
    for name, value in (("num_samples", num_samples), ("length", length), ("channels", channels)):
        # isinstance first: int(None), int('3') or int(nan) would raise TypeError/ValueError/OverflowError.
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and int(value) == value and value >= 1):
            raise ValueError("{} must be a positive integer, got {!r}".format(name, value))
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.0, 0.1, size=(num_samples, 1, channels))
    phase = rng.uniform(0.0, 0.1, size=(num_samples, 1, channels))
    t = np.arange(length, dtype=np.float64).reshape(1, -1, 1)
    x = (np.sin(freq * t + phase) + 1.0) / 2.0
    return torch.as_tensor(x, dtype=dtype)
