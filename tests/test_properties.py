"""Property tests (hypothesis) of the input boundaries: data generators and loaders, windows, scalers and
diffusion distributions. Any finite input round-trips or gives well-shaped finite output; any bad input
raises ValueError (never a TypeError, IndexError or RuntimeError from deep inside numpy or torch)."""

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyroseq.data import MemmapWindows, MinMaxScaler, bimodal, num_windows, sines, sliding_windows
from pyroseq.distributions import DiffusionLikelihood

SETTINGS = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)
BAD_INTS = st.one_of(st.integers(-5, 0), st.floats(0.5, 3.5).filter(lambda v: v != int(v)), st.just("3"),
                     st.none())


def series_arrays(min_length=1, max_length=40, max_channels=4, elements=FINITE):
    return hnp.arrays(np.float64, st.tuples(st.integers(min_length, max_length), st.integers(1, max_channels)),
                      elements=elements)


def _with_range(x):
    """Every channel non-constant (a constant channel cannot be min-max scaled)."""
    return bool((x.max(0) > x.min(0)).all())


# -- scalers ----------------------------------------------------------------------------------------------

@SETTINGS
@given(x=series_arrays(min_length=2).filter(_with_range),
       feature_range=st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (-3.0, 0.5)]), as_tensor=st.booleans())
def test_minmax_round_trip(x, feature_range, as_tensor):
    data = torch.as_tensor(x) if as_tensor else x
    scaler = MinMaxScaler(feature_range).fit(data)
    y = scaler.transform(data)
    back = scaler.inverse_transform(y)
    assert type(y) is type(data) and tuple(y.shape) == x.shape
    y, back = np.asarray(y), np.asarray(back)
    low, high = feature_range
    assert np.isfinite(y).all() and (y >= low - 1e-9).all() and (y <= high + 1e-9).all()
    scale = np.abs(x).max(0) + (x.max(0) - x.min(0))
    assert (np.abs(back - x) <= 1e-12 * scale + 1e-300).all()


@SETTINGS
@given(x=series_arrays(min_length=2).filter(_with_range), row=st.integers(0, 39), col=st.integers(0, 3),
       bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_minmax_rejects_non_finite(x, row, col, bad):
    x = x.copy()
    x[row % x.shape[0], col % x.shape[1]] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        MinMaxScaler().fit(x)


@SETTINGS
@given(x=series_arrays(min_length=2).filter(_with_range), extra=st.integers(1, 3))
def test_minmax_rejects_bad_shapes_and_states(x, extra):
    with pytest.raises(ValueError, match="not fitted"):
        MinMaxScaler().transform(x)
    scaler = MinMaxScaler().fit(x)
    with pytest.raises(ValueError, match="channels"):
        scaler.transform(np.zeros((3, x.shape[1] + extra)))
    with pytest.raises(ValueError, match="constant"):
        MinMaxScaler().fit(np.concatenate([x, np.ones((x.shape[0], 1))], 1))


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([1 + 2j, 3j]), np.zeros((0, 2))])
def test_minmax_rejects_bad_data(bad):
    with pytest.raises(ValueError):
        MinMaxScaler().fit(bad)


@pytest.mark.parametrize("feature_range", [(1, 0), (0, 0), (0, float("nan"))])
def test_minmax_rejects_bad_range(feature_range):
    with pytest.raises(ValueError, match="feature_range"):
        MinMaxScaler(feature_range)


# -- windows and data loaders -----------------------------------------------------------------------------

@SETTINGS
@given(data=st.data(), x=series_arrays(), as_tensor=st.booleans())
def test_sliding_windows_are_the_slices(data, x, as_tensor):
    T = x.shape[0]
    length = data.draw(st.integers(1, T))
    stride = data.draw(st.integers(1, T + 2))
    series = torch.as_tensor(x) if as_tensor else x
    windows = sliding_windows(series, length, stride)
    n = num_windows(T, length, stride)
    assert tuple(windows.shape) == (n, length, x.shape[1]) and n == len(range(0, T - length + 1, stride))
    for i in {0, n // 2, n - 1}:
        np.testing.assert_array_equal(np.asarray(windows[i]), x[i * stride : i * stride + length])


@SETTINGS
@given(x=series_arrays(), length=BAD_INTS, stride=st.one_of(st.just(1), BAD_INTS))
def test_sliding_windows_reject_bad_arguments(x, length, stride):
    with pytest.raises(ValueError):
        sliding_windows(x, length, stride)


@SETTINGS
@given(x=series_arrays(), length=st.integers(41, 100))
def test_sliding_windows_reject_too_long_windows(x, length):
    with pytest.raises(ValueError, match="length"):
        sliding_windows(torch.as_tensor(x), length)
    with pytest.raises(ValueError, match="shape"):
        sliding_windows(x[None, None], 1)


@SETTINGS
@given(data=st.data(), x=series_arrays(elements=st.floats(-1e6, 1e6, width=32)))
def test_memmap_windows_match_in_memory_windows(data, x):
    x = x.astype(np.float32)
    length = data.draw(st.integers(1, x.shape[0]))
    stride = data.draw(st.integers(1, 4))
    ds = MemmapWindows(x, length=length, stride=stride)
    expected = sliding_windows(torch.from_numpy(x), length, stride)
    idx = data.draw(st.lists(st.integers(-len(ds), len(ds) - 1), max_size=12))
    batch = ds[torch.tensor(idx, dtype=torch.long)]
    assert batch.shape == (len(idx), length, x.shape[1])
    assert torch.equal(batch, expected[torch.tensor(idx, dtype=torch.long)]) if idx else batch.numel() == 0
    bad = data.draw(st.one_of(st.integers(len(ds), len(ds) + 5), st.integers(-len(ds) - 5, -len(ds) - 1)))
    with pytest.raises(ValueError):
        ds[torch.tensor([bad])]


@SETTINGS
@given(num=st.integers(1, 6), length=st.integers(1, 12), channels=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_generators_give_finite_data_of_the_requested_shape(num, length, channels, seed):
    x = sines(num_samples=num, length=length, channels=channels, seed=seed)
    assert x.shape == (num, length, channels) and torch.isfinite(x).all() and (x >= 0).all() and (x <= 1).all()
    y = bimodal(num, length, seed=seed)
    assert y.shape == (num, length, 1) and torch.isfinite(y).all()


@SETTINGS
@given(bad=BAD_INTS)
def test_generators_reject_bad_sizes(bad):
    with pytest.raises(ValueError):
        sines(num_samples=bad, length=4)
    with pytest.raises(ValueError):
        bimodal(4, bad)


# -- distributions ----------------------------------------------------------------------------------------

def gaussian_denoiser(x, sigma, context=None):
    return x / (1 + sigma.reshape((-1,) + (1,) * (x.dim() - 1)) ** 2)


@SETTINGS
@given(batch=st.lists(st.integers(1, 3), max_size=2), event=st.lists(st.integers(1, 3), min_size=1, max_size=2),
       sample=st.lists(st.integers(1, 2), max_size=1), scale=st.floats(1e-3, 1e3), seed=st.integers(0, 1000))
def test_diffusion_likelihood_log_prob_is_finite_and_shaped(batch, event, sample, scale, seed):
    torch.manual_seed(seed)
    lik = DiffusionLikelihood(gaussian_denoiser, event_shape=tuple(event), batch_shape=tuple(batch))
    value = scale * torch.randn(tuple(sample) + tuple(batch) + tuple(event))
    log_prob = lik.log_prob(value)
    assert log_prob.shape == tuple(sample) + tuple(batch)
    assert torch.isfinite(log_prob).all()
    assert (log_prob < 10 * math.prod(event)).all()  # minus a bound on -log p; a Gaussian-scale value


@SETTINGS
@given(event=st.lists(st.integers(1, 3), min_size=1, max_size=2), extra=st.integers(1, 3),
       bad=st.sampled_from([float("nan"), float("inf")]))
def test_diffusion_likelihood_rejects_bad_values(event, extra, bad):
    lik = DiffusionLikelihood(gaussian_denoiser, event_shape=tuple(event))
    value = torch.randn(event)
    value.view(-1)[0] = bad
    with pytest.raises(ValueError):
        lik.log_prob(value)
    with pytest.raises(ValueError):
        lik.log_prob(torch.randn(tuple(event[:-1]) + (event[-1] + extra,)))
    with pytest.raises(ValueError):
        lik.log_prob(value.tolist())


@SETTINGS
@given(event=st.one_of(st.lists(st.integers(-3, 0), min_size=1, max_size=2).map(tuple), st.just("T")),
       draws=st.one_of(st.just(1), BAD_INTS))
def test_diffusion_likelihood_rejects_bad_arguments(event, draws):
    with pytest.raises(ValueError):
        DiffusionLikelihood(gaussian_denoiser, event_shape=event, num_noise_draws=draws)
    with pytest.raises(ValueError):
        DiffusionLikelihood("not callable", event_shape=(2,))


# -- checkpoints ------------------------------------------------------------------------------------------

@SETTINGS
@given(arrays=st.lists(hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=5), elements=st.floats(
    -1e6, 1e6, width=32)), max_size=4), step=st.integers(0, 10**9), flip=st.integers(0, 10**9))
def test_checkpoint_round_trip_and_corruption(tmp_path_factory, arrays, step, flip):
    from pyroseq.inference import load_checkpoint, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "state.pt"
    state = {"step": step, "tensors": [torch.from_numpy(a) for a in arrays]}
    save_checkpoint(path, state)
    loaded = load_checkpoint(path, required=("step", "tensors"))
    assert loaded["step"] == step and all(torch.equal(a, b) for a, b in zip(state["tensors"], loaded["tensors"]))
    data = bytearray(path.read_bytes())
    data[flip % len(data)] ^= 0x01  # any single flipped bit is detected or harmless (zip padding), never a crash
    path.write_bytes(bytes(data))
    try:
        again = load_checkpoint(path)
    except ValueError:
        return
    assert again["step"] == step and all(torch.equal(a, b) for a, b in zip(state["tensors"], again["tensors"]))


# -- training entry point ---------------------------------------------------------------------------------

@SETTINGS
@given(shape=st.sampled_from([(4, 5, 1), (3, 6, 1)]), row=st.integers(0, 2), bad=st.sampled_from(
    ["inf", "-inf", "rank", "int", "list", "channels", "empty"]))
def test_fit_rejects_bad_data_with_value_error(shape, row, bad):
    from pyroseq.inference import fit
    from pyroseq.models import DKF

    x = torch.randn(shape)
    if bad in ("inf", "-inf"):
        x[row, 0, 0] = float(bad)
    elif bad == "rank":
        x = x[0]
    elif bad == "int":
        x = x.long()
    elif bad == "list":
        x = x.tolist()
    elif bad == "channels":
        x = torch.randn(shape[:2] + (3,))
    elif bad == "empty":
        x = x[:0]
    model = DKF(1, 1, rnn_dim=4, hidden_dim=4, transition_dim=4)
    with pytest.raises(ValueError):
        fit(model, x, num_steps=1, batch_size=2, progress=False)
