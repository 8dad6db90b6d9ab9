import pandas as pd
import pytest
import torch

from pyroseq.runs import load_run_data, validate_config


def _data(**kw):
    return validate_config(dict(model="dimts", data=kw))["data"]


def test_independent_series_are_split_without_a_gap():
    data = load_run_data(_data(name="bimodal", length=8, test_fraction=0.25, kwargs={"num_samples": 40}))
    assert data.independent
    assert data.train.shape == (30, 8, 1) and data.test.shape == (10, 8, 1)
    assert data.obs_dim == 1 and data.length == 8 and data.all.shape == (40, 8, 1)


@pytest.mark.parametrize("stride", [1, 3])
def test_overlapping_windows_leave_a_gap_between_train_and_test(tmp_path, stride):
    # A series whose value is its time index: the windows tell which time steps they hold.
    path = tmp_path / "ramp.csv"
    pd.DataFrame({"date": range(100), "a": range(100), "b": [2 * i for i in range(100)]}).to_csv(path, index=False)
    data = load_run_data(_data(name=str(path), length=10, stride=stride, test_fraction=0.3))
    assert not data.independent and data.columns == ("a", "b")
    last_train = data.train[:, :, 0].max()
    first_test = data.test[:, :, 0].min()
    assert first_test > last_train  # no time step in both parts
    assert torch.all((data.train >= 0) & (data.train <= 1))  # min-max scaled


def test_max_windows_keeps_the_whole_range_and_the_gap(tmp_path):
    path = tmp_path / "ramp.csv"
    pd.DataFrame({"a": range(1000)}).to_csv(path, index=False)
    data = load_run_data(_data(name=str(path), length=20, max_windows=50, test_fraction=0.2))
    assert len(data.train) + len(data.test) <= 50 and len(data.test) == 10
    assert data.test[:, :, 0].min() > data.train[:, :, 0].max()
    assert data.test[-1, -1, 0] == pytest.approx(1.0)  # the last window is kept


@pytest.mark.parametrize("kw, error, message", [
    (dict(name="no_such_data"), ValueError, "unknown dataset 'no_such_data'"),
    (dict(name="bimodal", kwargs={"bogus": 1}), ValueError, "bad arguments for dataset 'bimodal'"),
    (dict(name="/nonexistent/file.csv"), FileNotFoundError, "does not exist"),
    (dict(name="bimodal", length=8, kwargs={"num_samples": 1}), ValueError, "too few to train on"),
])
def test_bad_data_sections(kw, error, message):
    with pytest.raises(error, match=message):
        load_run_data(_data(**kw))
