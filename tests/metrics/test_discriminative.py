import numpy as np
import pytest
import torch

from pyroseq.data import sines
from pyroseq.metrics import discriminative_score
from pyroseq.metrics.discriminative import GRUClassifier


@pytest.fixture(autouse=True)
def _one_thread():
    # The networks are tiny: intra-op threads only add synchronisation cost, which becomes a
    # many-fold slowdown on a loaded machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _time_shuffled(x, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([w[torch.randperm(w.shape[0], generator=g)] for w in x])


# Short training with a larger learning rate: the properties below hold by wide margins.
FAST = dict(repeats=2, iterations=200, lr=1e-2)


def test_heldout_real_is_indistinguishable():
    score = discriminative_score(sines(2000, seed=0), sines(2000, seed=1), **FAST)
    assert score.values.shape == (2,)
    assert score.mean <= 0.05, score


def test_time_shuffled_is_detected():
    real = sines(1000, seed=0)
    score = discriminative_score(real, _time_shuffled(real), **FAST)
    assert score.mean >= 0.3, score


def test_reproducible_and_univariate():
    real, fake = torch.rand(60, 5, 1), torch.rand(50, 5, 1) ** 2  # C = 1 -> hidden 1
    a = discriminative_score(real, fake, repeats=2, seed=1, iterations=5)
    b = discriminative_score(real.numpy(), fake.numpy(), repeats=2, seed=1, iterations=5)
    np.testing.assert_array_equal(a.values, b.values)
    assert ((0 <= a.values) & (a.values <= 0.5)).all()


def test_default_hidden_dim(monkeypatch):
    widths = []
    original = GRUClassifier.__init__

    def spy(self, channels, hidden_dim):
        widths.append(hidden_dim)
        original(self, channels, hidden_dim)

    monkeypatch.setattr(GRUClassifier, "__init__", spy)
    for channels in (1, 2, 5, 7):
        x = torch.rand(10, 4, channels)
        discriminative_score(x, x, repeats=1, iterations=1)
    assert widths == [1, 1, 2, 3]


@pytest.mark.parametrize("real,fake,match", [
    (torch.rand(10, 5, 3), torch.rand(10, 5, 2), "same \\(length, channels\\)"),
    (torch.rand(10, 5), torch.rand(10, 5, 2), "real must have shape"),
    (torch.rand(10, 5, 2), torch.rand(10, 5, 2) * 2, "fake must be min-max scaled"),
    (torch.rand(1, 5, 2), torch.rand(10, 5, 2), "real must contain at least 2"),
])
def test_errors(real, fake, match):
    with pytest.raises(ValueError, match=match):
        discriminative_score(real, fake, repeats=1, iterations=1)


@pytest.mark.parametrize("fraction,match", [(0.1, "non-empty"), (1.0, "train_fraction")])
def test_split_errors(fraction, match):
    with pytest.raises(ValueError, match=match):
        discriminative_score(torch.rand(5, 4, 2), torch.rand(5, 4, 2), repeats=1, iterations=1,
                             train_fraction=fraction)


@pytest.mark.slow
def test_protocol():
    real = sines(2000, seed=0)
    assert discriminative_score(real, sines(2000, seed=1)).mean <= 0.05
    assert discriminative_score(real, _time_shuffled(real)).mean >= 0.3
