import numpy as np
import pytest
import torch

from pyroseq.nn import MovingAverage, ProgressiveDecomposition, SeriesDecomposition


def reference_moving_average(x, k):
    """Loop reference: centered window, indices clamped to the series (replicate padding)."""
    x = np.asarray(x, dtype=np.float64)  # (T, D)
    T = x.shape[0]
    left = (k - 1) // 2
    out = np.zeros_like(x)
    for t in range(T):
        idx = np.clip(np.arange(t - left, t - left + k), 0, T - 1)
        out[t] = x[idx].mean(0)
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 25])
@pytest.mark.parametrize("T", [1, 4, 17, 64])
def test_moving_average_matches_reference(k, T):
    torch.manual_seed(k * 100 + T)
    x = torch.randn(3, T, 2, dtype=torch.float64)
    trend = MovingAverage(k)(x)
    assert trend.shape == x.shape
    for b in range(3):
        np.testing.assert_allclose(trend[b].numpy(), reference_moving_average(x[b], k), rtol=0, atol=1e-12)


def test_moving_average_time_dim_and_invariants():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 30, dtype=torch.float64)  # time last
    a = MovingAverage(7, time_dim=-1)(x)
    b = MovingAverage(7)(x.transpose(1, 2)).transpose(1, 2)
    assert torch.equal(a, b)
    const = torch.full((1, 20, 3), 0.7, dtype=torch.float64)
    assert torch.allclose(MovingAverage(9)(const), const, atol=1e-15)
    # A centered odd window leaves a straight line unchanged away from the padded ends.
    line = torch.arange(40, dtype=torch.float64).reshape(1, 40, 1)
    assert torch.allclose(MovingAverage(5)(line)[:, 2:-2], line[:, 2:-2], atol=1e-12)
    assert torch.equal(MovingAverage(1)(x), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 3, 6, 13])
def test_series_decomposition_reconstructs_input(k, dtype):
    torch.manual_seed(k)
    x = torch.randn(4, 50, 3, dtype=dtype).cumsum(1)
    trend, residual = SeriesDecomposition(k)(x)
    assert trend.shape == residual.shape == x.shape
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(trend + residual, x, rtol=0, atol=tol)
    np.testing.assert_allclose(trend[0].double().numpy(), reference_moving_average(x[0], k), atol=tol * 10)


@pytest.mark.parametrize("kernel_sizes", [(25,), (25, 13, 1), (9, 5, 3), (1, 1)])
def test_progressive_decomposition_reconstructs_input(kernel_sizes):
    torch.manual_seed(0)
    x = torch.randn(2, 64, 4, dtype=torch.float64)
    trends, residual = ProgressiveDecomposition(kernel_sizes)(x)
    assert len(trends) == len(kernel_sizes)
    assert torch.allclose(sum(trends) + residual, x, rtol=0, atol=1e-12)
    # Scale s is the moving average of what scale s - 1 left over.
    left = x
    for k, trend in zip(kernel_sizes, trends):
        assert torch.allclose(trend, MovingAverage(k)(left), atol=1e-12)
        left = left - trend
    if kernel_sizes[-1] == 1:
        assert torch.equal(residual, torch.zeros_like(residual))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "5"])
def test_bad_kernel_size_raises(bad):
    with pytest.raises(ValueError, match="kernel_size"):
        MovingAverage(bad)
    with pytest.raises(ValueError, match="kernel_size"):
        ProgressiveDecomposition((5, bad))


def test_empty_kernel_sizes_raise():
    with pytest.raises(ValueError, match="kernel_sizes"):
        ProgressiveDecomposition(())
