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


def test_csv_with_missing_cells_keeps_them_as_nan_and_drops_empty_windows(tmp_path):
    path = tmp_path / "gaps.csv"
    a = [str(i) for i in range(60)]
    b = [str(2 * i) for i in range(60)]
    a[3] = ""
    b[7] = "NaN"
    for i in range(20, 32):  # a stretch longer than a window, in both columns
        a[i] = b[i] = ""
    path.write_text("time,a,b\n" + "".join(f"{i},{x},{y}\n" for i, (x, y) in enumerate(zip(a, b))))
    messages = []
    data = load_run_data(_data(name=str(path), length=8, test_fraction=0.0), log=messages.append)
    assert data.units == {"min": [0.0, 0.0], "max": [59.0, 118.0]}  # over the observed values
    assert torch.isnan(data.train).any() and not torch.isnan(data.train).flatten(1).all(1).any()
    assert len(data.train) == 53 - 5  # the windows inside rows 20-31 have no observed value
    assert "26 cells of" in messages[0] and "dropped 5 training" in messages[0]
    complete = load_run_data(_data(name=str(path), length=8, test_fraction=0.0), complete=True)
    assert not torch.isnan(complete.train).any()


@pytest.mark.parametrize("text, message", [
    ("a,b\n1,\n2,\n3,\n", "column 'b' of .* has no observed value"),
    ("a,b\n1,5\n2,5\n3,5\n", "column 'b' of .* is constant"),
    ("a,b\n1,2\n2,x\n", "column 'b' has non-numeric value 'x' in data row 2"),
    ("a,b\n1,2\n2,-inf\n", "column 'b' has an infinite value"),
])
def test_bad_csv_cells_are_named(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_run_data(_data(name=str(path), length=2, test_fraction=0.0))
