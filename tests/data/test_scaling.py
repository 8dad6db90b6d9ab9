import numpy as np
import pytest
import torch

from pyroseq.data import MinMaxScaler


@pytest.mark.parametrize("feature_range", [(0.0, 1.0), (-1.0, 1.0)])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_round_trip(feature_range, backend):
    rng = np.random.default_rng(0)
    series = rng.normal(size=(50, 4)) * [1, 10, 100, 1e4] + [0, -5, 3, 1e5]
    x = torch.as_tensor(series) if backend == "torch" else series
    scaler = MinMaxScaler(feature_range).fit(x)
    y = scaler.transform(x)
    assert type(y) is type(x)
    y = np.asarray(y)
    np.testing.assert_array_equal(y.min(0), feature_range[0])  # exactly, no round-off overshoot
    np.testing.assert_array_equal(y.max(0), feature_range[1])
    np.testing.assert_allclose(np.asarray(scaler.inverse_transform(scaler.transform(x))), series,
                               rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(np.asarray(scaler.fit_transform(x)), y)


def test_exact_values_and_pooling():
    x = np.array([[[0.0, 10.0], [2.0, 20.0]], [[4.0, 30.0], [1.0, 10.0]]])  # (2, 2, 2)
    scaler = MinMaxScaler().fit(x)
    np.testing.assert_array_equal(scaler.data_min, [0.0, 10.0])
    np.testing.assert_array_equal(scaler.data_max, [4.0, 30.0])
    np.testing.assert_allclose(scaler.transform(np.array([[2.0, 20.0]])), [[0.5, 0.5]])
    np.testing.assert_allclose(MinMaxScaler((-1, 1)).fit(x).transform(np.array([[3.0, 10.0]])),
                               [[0.5, -1.0]])


def test_dtype_preserved():
    x32 = np.random.default_rng(0).uniform(size=(20, 3)).astype(np.float32)
    scaler = MinMaxScaler().fit(x32)
    assert scaler.transform(x32).dtype == np.float32
    assert scaler.inverse_transform(torch.as_tensor(x32)).dtype == torch.float32


def test_errors():
    x = np.random.default_rng(0).uniform(size=(20, 4))
    x[:, 2] = 7.0
    with pytest.raises(ValueError, match=r"constant channel\(s\) \[2\]"):
        MinMaxScaler().fit(x)
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in channel\(s\) \[1\]"):
        MinMaxScaler().fit(x)
    with pytest.raises(ValueError, match="not fitted"):
        MinMaxScaler().transform(x)
    scaler = MinMaxScaler().fit(np.random.default_rng(0).uniform(size=(5, 3)))
    with pytest.raises(ValueError, match="4 channels but the scaler was fitted on 3"):
        scaler.transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="low < high"):
        MinMaxScaler((1, 1))
    with pytest.raises(ValueError, match="non-empty"):
        MinMaxScaler().fit(np.zeros((0, 3)))
