import numpy as np
import pytest
import torch

from pyroseq.data import sines


@pytest.mark.parametrize("num_samples,length,channels", [(10, 24, 5), (3, 64, 1), (1, 2, 2)])
def test_sines_shape_range(num_samples, length, channels):
    x = sines(num_samples, length, channels, seed=0)
    assert x.shape == (num_samples, length, channels) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1


def test_sines_default_size():
    x = sines()
    assert x.shape == (10000, 24, 5)
    assert 0 <= x.min() and x.max() <= 1


def test_sines_are_slow_sinusoids():
    # y = 2x - 1 = sin(w t + p) satisfies y[t+1] + y[t-1] = 2 cos(w) y[t]; w, p ~ U(0, 0.1).
    y = 2 * sines(200, 24, 3, seed=1, dtype=torch.float64).numpy() - 1
    outer, mid = y[:, 2:] + y[:, :-2], 2 * y[:, 1:-1]
    cos_w = (outer * mid).sum(1) / (mid * mid).sum(1)  # least squares, per window and channel
    np.testing.assert_allclose(outer, cos_w[:, None] * mid, atol=1e-10)
    w = np.arccos(np.clip(cos_w, -1, 1))
    assert (w <= 0.1 + 1e-6).all() and w.max() > 0.09
    phase = np.arcsin(y[:, 0])
    assert (phase >= 0).all() and (phase <= 0.1 + 1e-12).all() and phase.max() > 0.09


def test_sines_seed():
    assert torch.equal(sines(5, seed=3), sines(5, seed=3))
    assert not torch.equal(sines(5, seed=3), sines(5, seed=4))


@pytest.mark.parametrize("kwargs,name", [
    (dict(num_samples=0), "num_samples"), (dict(length=-1), "length"), (dict(channels=2.5), "channels"),
])
def test_sines_errors(kwargs, name):
    with pytest.raises(ValueError, match=name):
        sines(**kwargs)
