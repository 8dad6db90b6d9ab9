import numpy as np
import pytest
import torch

from pyroseq.data import num_windows, sliding_windows


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("steps,length,stride", [(10, 1, 1), (10, 10, 1), (10, 3, 1), (10, 3, 4),
                                                 (11, 4, 2), (5, 2, 7)])
def test_sliding_windows_values(backend, steps, length, stride):
    series = np.arange(steps * 3, dtype=np.float64).reshape(steps, 3)
    expected = np.stack([series[s:s + length] for s in range(0, steps - length + 1, stride)])
    x = torch.as_tensor(series) if backend == "torch" else series
    w = sliding_windows(x, length, stride)
    assert type(w) is type(x)
    assert w.shape == expected.shape == (num_windows(steps, length, stride), length, 3)
    np.testing.assert_array_equal(np.asarray(w), expected)


def test_sliding_windows_are_views():
    series = np.random.default_rng(0).normal(size=(1000, 7))
    w = sliding_windows(series, 256)
    assert w.shape == (745, 256, 7)
    assert np.shares_memory(w, series) and not w.flags.writeable
    t = torch.as_tensor(series)
    wt = sliding_windows(t, 256)
    assert wt.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
    assert torch.equal(wt.contiguous(), torch.as_tensor(np.array(w)))


def test_sliding_windows_1d():
    w = sliding_windows(np.arange(5.0), 2)
    assert w.shape == (4, 2, 1)


@pytest.mark.parametrize("length,stride,match", [(11, 1, "length must not exceed"),
                                                 (0, 1, "positive"), (3, 0, "positive")])
def test_sliding_windows_errors(length, stride, match):
    with pytest.raises(ValueError, match=match):
        sliding_windows(np.zeros((10, 2)), length, stride)


def test_sliding_windows_rank_error():
    with pytest.raises(ValueError, match="series must have shape"):
        sliding_windows(np.zeros((10, 2, 2)), 3)
