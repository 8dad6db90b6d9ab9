import numpy as np
import pytest
import torch

from pyroseq.data import sines
from pyroseq.metrics import predictive_score
from pyroseq.metrics.predictive import GRUPredictor, _inputs_targets


@pytest.fixture(autouse=True)
def _one_thread():
    # The networks are tiny: intra-op threads only add synchronisation cost, which becomes a
    # many-fold slowdown on a loaded machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_inputs_targets_alignment():
    x = torch.arange(2 * 4 * 3.0).reshape(2, 4, 3)
    inputs, targets = _inputs_targets(x)
    assert torch.equal(inputs, x[:, 0:3, 0:2])
    assert torch.equal(targets, x[:, 1:4, 2])


def test_perfect_predictor_scores_zero(monkeypatch):
    # A predictor that outputs the target exactly (here: the target channel lagged copy in the
    # inputs) must score 0; checks that the score is the MAE on the real windows.
    x = torch.rand(30, 6, 1)
    real = torch.cat([x[:, 1:], x[:, :-1]], -1)  # channel 0 at t = channel 1 at t + 1
    monkeypatch.setattr(GRUPredictor, "forward", lambda self, inp: inp[..., 0])
    score = predictive_score(real, torch.rand(5, 5, 2), repeats=1, iterations=0)
    assert score.mean == pytest.approx(0.0, abs=1e-7)


def test_constant_predictor_exact_mae(monkeypatch):
    real = torch.rand(20, 7, 3, dtype=torch.float64)
    monkeypatch.setattr(GRUPredictor, "forward", lambda self, inp: torch.full(inp.shape[:2], 0.25))
    score = predictive_score(real, torch.rand(5, 7, 3), repeats=2, iterations=0)
    expected = (real[:, 1:, 2] - 0.25).abs().mean(1).mean().item()  # mean of per-window MAEs
    np.testing.assert_allclose(score.values, expected, rtol=1e-6)


def test_trained_on_real_beats_trained_on_wrong_target():
    real, heldout = sines(500, seed=0), sines(500, seed=1)
    wrong = heldout.clone()
    wrong[..., -1] = 0.05  # the target channel is a constant far from the real one (>= 0.5)
    kwargs = dict(repeats=1, iterations=150, lr=1e-2)
    good = predictive_score(real, heldout, **kwargs)
    bad = predictive_score(real, wrong, **kwargs)
    assert good.mean < 0.2 and bad.mean > 0.4, (good, bad)


def test_reproducible():
    real, fake = torch.rand(40, 5, 3), torch.rand(30, 5, 3)
    a = predictive_score(real, fake, repeats=2, seed=2, iterations=5)
    b = predictive_score(real.numpy(), fake.double(), repeats=2, seed=2, iterations=5)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-6)
    c = predictive_score(real, fake, repeats=2, seed=3, iterations=5)
    assert not np.array_equal(a.values, c.values)


@pytest.mark.parametrize("real,fake,match", [
    (torch.rand(10, 5, 1), torch.rand(10, 5, 1), "at least 2 channels"),
    (torch.rand(10, 1, 2), torch.rand(10, 1, 2), "length >= 2"),
    (torch.rand(10, 5, 2), torch.rand(10, 6, 2), "same \\(length, channels\\)"),
    (torch.rand(10, 5, 2), torch.full((10, 5, 2), float("inf")), "fake contains NaN"),
])
def test_errors(real, fake, match):
    with pytest.raises(ValueError, match=match):
        predictive_score(real, fake, repeats=1, iterations=1)


@pytest.mark.slow
def test_protocol():
    real = sines(2000, seed=0)
    score = predictive_score(real, sines(2000, seed=1))
    assert 0.05 < score.mean < 0.15, score  # published Diffusion-TS value on Sines: 0.093
