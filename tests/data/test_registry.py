import numpy as np
import pandas as pd
import pytest
import torch

from pyroseq.data import (
    WindowedDataset,
    get_dataset,
    list_datasets,
    register_dataset,
    sines,
    windowed_series,
)
from pyroseq.data import registry as registry_module


def test_builtin_names():
    assert {"sines", "stocks", "etth"} <= set(list_datasets())


def test_sines_dataset():
    ds = get_dataset("Sines", length=16, num_samples=50, channels=3, seed=2)
    assert isinstance(ds, WindowedDataset) and len(ds) == 50
    assert torch.equal(ds.windows, sines(50, 16, 3, seed=2))
    assert ds.scaler is None and ds.series is None and len(ds.columns) == 3


def test_csv_dataset_scaled_windows(tmp_path, monkeypatch):
    monkeypatch.delenv("PYROSEQ_DATA", raising=False)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.uniform(1, 2, size=(40, 6)) * np.arange(1, 7),
                         columns=["Open", "High", "Low", "Close", "Adj_Close", "Volume"])
    frame.to_csv(tmp_path / "stock_data.csv", index=False, float_format="%.6f")
    ds = get_dataset("stocks", length=8, root=tmp_path)
    assert ds.windows.shape == (33, 8, 6) and ds.windows.dtype == torch.float32
    assert ds.series.min() == 0 and ds.series.max() == 1
    np.testing.assert_array_equal(ds.series.amin(0).numpy(), 0)
    np.testing.assert_array_equal(ds.series.amax(0).numpy(), 1)
    assert ds.windows.untyped_storage().data_ptr() == ds.series.untyped_storage().data_ptr()
    np.testing.assert_allclose(ds.scaler.inverse_transform(ds.windows[3].double()).numpy(),
                               frame.to_numpy()[3:11], rtol=1e-6)
    ds2 = get_dataset("stocks", length=8, stride=4, root=tmp_path, columns=["Close", "Open"])
    assert ds2.windows.shape == (9, 8, 2) and ds2.columns == ("Close", "Open")
    with pytest.raises(ValueError, match="not in dataset"):
        get_dataset("stocks", root=tmp_path, columns=["nope"])
    with pytest.raises(ValueError, match="length must not exceed"):
        get_dataset("stocks", length=41, root=tmp_path)


def test_register_dataset(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    @register_dataset("ramp")
    def ramp(length=24, stride=1):
        frame = pd.DataFrame({"a": np.arange(30.0), "b": np.arange(30.0) ** 2})
        return windowed_series("ramp", frame, length, stride)

    ds = get_dataset("ramp", length=5)
    assert ds.windows.shape == (26, 5, 2) and ds.name == "ramp"
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("ramp", ramp)
    register_dataset("ramp", lambda length: "replaced", overwrite=True)
    assert get_dataset("ramp") == "replaced"


def test_windowed_series_array():
    ds = windowed_series("arr", np.stack([np.arange(10.0), np.arange(10.0) ** 2], -1), 4, stride=3)
    assert ds.windows.shape == (3, 4, 2) and ds.columns == ("0", "1")
    torch.testing.assert_close(ds.windows[1, :, 0], torch.tensor([3.0, 4, 5, 6]) / 9)
    with pytest.raises(ValueError, match="constant channel"):
        windowed_series("flat", np.ones((10, 2)), 4)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'energy'; registered: .*sines"):
        get_dataset("energy")


@pytest.mark.parametrize("length,count", [(24, 17397), (256, 17165)])
def test_real_etth_windows(length, count):
    ds = get_dataset("etth", length=length)
    assert ds.windows.shape == (count, length, 7)
    assert not ds.windows.is_contiguous()  # a view: no (count, length, 7) copy
    assert 0 <= ds.windows.min() and ds.windows.max() <= 1


def test_real_stock_windows():
    assert get_dataset("stocks").windows.shape == (3662, 24, 6)
