import math

import pytest
import torch

from pyroseq.nn import LearnedPositionalEmbedding, NoiseLevelEmbedding, sinusoidal_features


@pytest.mark.parametrize("dim", [2, 6, 32])
@pytest.mark.parametrize("batch_shape", [(), (5,), (3, 4)])
def test_sinusoidal_features_match_formula(dim, batch_shape):
    values = torch.randn(batch_shape, dtype=torch.float64) * 3
    out = sinusoidal_features(values, dim, max_period=100.0)
    assert out.shape == batch_shape + (dim,)
    half = dim // 2
    for i in range(half):
        omega = 100.0 ** (-i / half)
        assert torch.allclose(out[..., i], torch.cos(values * omega), atol=1e-12)
        assert torch.allclose(out[..., half + i], torch.sin(values * omega), atol=1e-12)


@pytest.mark.parametrize("dim", [0, 3, -2, 2.5])
def test_sinusoidal_features_bad_dim(dim):
    with pytest.raises(ValueError, match="dim"):
        sinusoidal_features(torch.zeros(3), dim)


@pytest.mark.parametrize("kind", ["sinusoidal", "fourier"])
@pytest.mark.parametrize("embedding_dim", [1, 16, 33])
def test_noise_level_embedding_shape_and_distinct_levels(kind, embedding_dim):
    emb = NoiseLevelEmbedding(embedding_dim, kind=kind).double()
    c_noise = torch.log(torch.tensor([0.002, 0.1, 1.0, 80.0], dtype=torch.float64)) / 4
    out = emb(c_noise)
    assert out.shape == (4, embedding_dim)
    features = emb.features(c_noise)
    assert features.shape == (4, emb.num_features)
    # Distinct noise levels give distinct features (the MLP can tell them apart).
    assert torch.cdist(features, features)[~torch.eye(4, dtype=torch.bool)].min() > 1e-3


def test_noise_level_embedding_sinusoidal_scale():
    emb = NoiseLevelEmbedding(8, kind="sinusoidal", scale=3.0, max_period=50.0).double()
    c = torch.randn(6, dtype=torch.float64)
    assert torch.allclose(emb.features(c), sinusoidal_features(3.0 * c, 8, max_period=50.0))


def test_noise_level_embedding_fourier_formula_and_state_dict():
    torch.manual_seed(1)
    emb = NoiseLevelEmbedding(8, kind="fourier", scale=2.0).double()
    assert "frequencies" in emb.state_dict()
    assert "frequencies" not in dict(emb.named_parameters())
    f = emb.frequencies
    c = torch.randn(5, dtype=torch.float64)
    angles = 2 * math.pi * c[:, None] * f
    assert torch.allclose(emb.features(c), torch.cat([angles.cos(), angles.sin()], -1))
    # The random frequencies travel with the state dict.
    torch.manual_seed(2)
    other = NoiseLevelEmbedding(8, kind="fourier", scale=2.0).double()
    assert not torch.equal(other.frequencies, f)
    other.load_state_dict(emb.state_dict())
    assert torch.equal(other(c), emb(c))


@pytest.mark.parametrize("c_noise", [torch.zeros(()), torch.zeros(3, 1), [0.0, 1.0]])
def test_noise_level_embedding_bad_input(c_noise):
    with pytest.raises(ValueError, match="c_noise"):
        NoiseLevelEmbedding(8)(c_noise)


@pytest.mark.parametrize("kwargs, name", [
    (dict(kind="gaussian"), "kind"),
    (dict(scale=0.0), "scale"),
    (dict(scale=float("nan")), "scale"),
    (dict(num_features=7), "num_features"),
    (dict(embedding_dim=0), "embedding_dim"),
])
def test_noise_level_embedding_bad_arguments(kwargs, name):
    kwargs = {"embedding_dim": 8, **kwargs}
    with pytest.raises(ValueError, match=name):
        NoiseLevelEmbedding(**kwargs)


def test_learned_positional_embedding_slices_and_gradients():
    emb = LearnedPositionalEmbedding(10, 4)
    assert torch.equal(emb(3), emb.weight[:3])
    assert torch.equal(emb(4, offset=6), emb.weight[6:10])
    assert emb(0).shape == (0, 4)
    emb(3, offset=2).sum().backward()
    used = emb.weight.grad.abs().sum(-1) > 0
    assert used.tolist() == [False, False, True, True, True] + [False] * 5


@pytest.mark.parametrize("length, offset", [(11, 0), (5, 6), (-1, 0), (2, -1)])
def test_learned_positional_embedding_bad_lengths(length, offset):
    with pytest.raises(ValueError, match="length|offset"):
        LearnedPositionalEmbedding(10, 4)(length, offset)
