import pickle
import tracemalloc

import numpy as np
import pyro
import pytest
import torch

from pyroseq.data import MemmapWindows, MinMaxScaler, WindowIndexError, bimodal, create_npy, sliding_windows
from pyroseq.inference import fit
from pyroseq.models import DKF


@pytest.fixture
def series_file(tmp_path):
    rng = np.random.default_rng(0)
    series = rng.normal(size=(500, 3)).astype(np.float32)
    path = tmp_path / "series.npy"
    out = create_npy(path, series.shape)
    for start in range(0, 500, 128):  # written chunk by chunk, as for a series larger than memory
        out[start : start + 128] = series[start : start + 128]
    out.flush()
    del out
    return path, series


@pytest.mark.parametrize("length,stride", [(1, 1), (16, 1), (16, 3), (500, 1)])
def test_windows_match_sliding_windows(series_file, length, stride):
    path, series = series_file
    ds = MemmapWindows(path, length=length, stride=stride)
    expected = sliding_windows(torch.from_numpy(series), length, stride)
    assert len(ds) == expected.shape[0] and ds.shape == tuple(expected.shape)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:7]
    assert torch.equal(ds[idx], expected[idx])  # requested order kept (rows are read sorted)
    assert torch.equal(ds[len(ds) - 1], expected[-1]) and torch.equal(ds[-1], expected[-1])
    assert torch.equal(ds[1:4], expected[1:4])


def test_sequences_array_and_dtype(tmp_path):
    x = np.random.default_rng(1).normal(size=(20, 8, 2))
    np.save(tmp_path / "seqs.npy", x)
    ds = MemmapWindows(tmp_path / "seqs.npy", dtype=torch.float64)
    assert len(ds) == 20 and ds.shape == (20, 8, 2)
    assert torch.equal(ds[torch.tensor([3, 0, 3])], torch.from_numpy(x[[3, 0, 3]]))


def test_holds_a_memmap_and_reads_only_the_batch(tmp_path):
    T, C, L = 2_000_000, 3, 32  # 24 MB on disk
    out = create_npy(tmp_path / "big.npy", (T, C))
    for start in range(0, T, 500_000):
        out[start : start + 500_000] = np.arange(start, min(T, start + 500_000), dtype=np.float32)[:, None]
    out.flush()
    del out
    ds = MemmapWindows(tmp_path / "big.npy", length=L)
    assert isinstance(ds.array, np.memmap)
    idx = torch.tensor([5, T - L, 12345])
    tracemalloc.start()
    batch = ds[idx]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert batch.shape == (3, L, C) and batch[1, -1, 0] == T - 1 and batch[2, 0, 2] == 12345
    assert peak < 100_000  # a few KB for the batch; the array is 24 MB
    assert not np.shares_memory(batch.numpy(), ds.array)
    clone = pickle.loads(pickle.dumps(ds))  # pickles by file name, not by content
    assert len(pickle.dumps(ds)) < 10_000 and isinstance(clone.array, np.memmap)
    assert torch.equal(clone[idx], batch)


def test_streaming_scaler_matches_in_memory(series_file):
    path, series = series_file
    ds = MemmapWindows(path, length=10)
    scaler = ds.fit_scaler((-1, 1), chunk_size=37)
    reference = MinMaxScaler((-1, 1)).fit(series)
    np.testing.assert_allclose(scaler.data_min, reference.data_min)
    np.testing.assert_allclose(scaler.data_max, reference.data_max)
    batch = ds[torch.arange(len(ds))]
    assert batch.min() == -1 and batch.max() == 1
    expected = sliding_windows(torch.as_tensor(reference.transform(series.astype(np.float64))), 10).float()
    torch.testing.assert_close(batch, expected)


def test_fit_on_memmap_equals_fit_on_tensor(tmp_path):
    x = bimodal(24, 8, seed=0)
    np.save(tmp_path / "x.npy", x.numpy())
    losses = []
    states = []
    for data in (x, MemmapWindows(tmp_path / "x.npy")):
        pyro.set_rng_seed(0)
        model = DKF(1, 1, rnn_dim=8, hidden_dim=8, transition_dim=8)
        losses.append(fit(model, data, num_steps=5, batch_size=8, progress=False))
        states.append(model.state_dict())
    assert losses[0] == losses[1]
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name


@pytest.mark.parametrize("kwargs,match", [
    (dict(length=None), "length is required"),
    (dict(length=501), "length must not exceed"),
    (dict(length=4, stride=0), "positive"),
    (dict(length=4, dtype=torch.int64), "dtype"),
    (dict(length=4, scaler="minmax"), "scaler"),
])
def test_bad_arguments(series_file, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MemmapWindows(series_file[0], **kwargs)


@pytest.mark.parametrize("source,match", [
    (np.zeros((2, 3, 4, 5)), "shape"),
    (np.array(["a", "b"]), "real numbers"),
    ([1.0, 2.0], "numpy array"),
])
def test_bad_sources(source, match):
    with pytest.raises(ValueError, match=match):
        MemmapWindows(source, length=1)


def test_bad_files(tmp_path):
    (tmp_path / "junk.npy").write_bytes(b"not an npy file")
    with pytest.raises(ValueError, match="junk.npy"):
        MemmapWindows(tmp_path / "junk.npy", length=1)
    with pytest.raises(ValueError, match="shape"):
        create_npy(tmp_path / "empty.npy", (0, 3))


@pytest.mark.parametrize("index", [10, -11, torch.tensor([0.5]), torch.tensor([[0, 1]]), torch.tensor([0, 10]),
                                   True])
def test_bad_index(index):
    ds = MemmapWindows(np.zeros((12, 2)), length=3)
    with pytest.raises(WindowIndexError):
        ds[index]
    assert issubclass(WindowIndexError, ValueError) and issubclass(WindowIndexError, IndexError)
