import pyro.distributions as dist
import pytest
import torch

from pyroseq.models import (
    AutoregressiveGaussianSequence,
    GaussianAutoregression,
    InitialPrior,
    LatentMarkovSequence,
    history_windows,
)
from pyroseq.nn import Combiner


def gaussian_transition(history, covariates=None):
    """z_t ~ N(0.5 * z_{t-1} - 0.2 * z_{t-j} (+ sum u), 0.3^2): an exact, vectorised reference."""
    loc = 0.5 * history[..., -1, :] - 0.2 * history[..., 0, :]
    if covariates is not None:
        loc = loc + covariates.sum(-1, keepdim=True)
    return dist.Normal(loc, 0.3).to_event(1)


def test_history_windows():
    z = torch.arange(10.0).reshape(1, 5, 2)
    w = history_windows(z, 2)
    assert w.shape == (1, 3, 2, 2)
    for i in range(3):
        assert torch.equal(w[0, i], z[0, i : i + 2])


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize("with_cov", [False, True])
def test_latent_markov_sequence_log_prob_matches_loop(order, with_cov):
    N, T, d = 4, 7, 2
    initial = dist.Normal(torch.zeros(N, order, d), 1.0).to_event(2)
    cov = torch.randn(N, T, 3) if with_cov else None
    seq = LatentMarkovSequence(gaussian_transition, T, order, initial=initial, covariates=cov)
    assert seq.batch_shape == (N,) and seq.event_shape == (T, d)
    z = torch.randn(N, T, d)
    expected = initial.log_prob(z[:, :order])
    for t in range(order, T):
        u = None if cov is None else cov[:, t]
        expected = expected + gaussian_transition(z[:, t - order : t], u).log_prob(z[:, t])
    assert torch.allclose(seq.log_prob(z), expected, atol=1e-5)
    assert seq.sample().shape == (N, T, d)
    assert seq.sample((3,)).shape == (3, N, T, d)
    assert seq.expand((2, N)).log_prob(z).shape == (2, N)


def test_latent_markov_sequence_from_history():
    N, T, d, j = 3, 4, 2, 2
    history = torch.randn(N, j, d)
    seq = LatentMarkovSequence(gaussian_transition, T, j, history=history)
    z = torch.randn(N, T, d)
    full = torch.cat([history, z], 1)
    expected = sum(gaussian_transition(full[:, t - j : t]).log_prob(full[:, t]) for t in range(j, j + T))
    assert torch.allclose(seq.log_prob(z), expected, atol=1e-5)
    torch.manual_seed(0)
    samples = seq.sample((20000,))
    assert samples.shape == (20000, N, T, d)
    # First step: N(0.5 z_0 - 0.2 z_{-1}, 0.3^2).
    mean = 0.5 * history[:, -1] - 0.2 * history[:, 0]
    assert torch.allclose(samples[:, :, 0].mean(0), mean, atol=0.02)
    assert torch.allclose(samples[:, :, 0].std(0), torch.full_like(mean, 0.3), atol=0.02)


def test_latent_markov_sequence_errors():
    initial = dist.Normal(torch.zeros(2, 1, 2), 1.0).to_event(2)
    with pytest.raises(ValueError, match="exactly one"):
        LatentMarkovSequence(gaussian_transition, 3, 1)
    with pytest.raises(ValueError, match="event shape"):
        LatentMarkovSequence(gaussian_transition, 3, 2, initial=initial)
    with pytest.raises(ValueError, match="covariates"):
        LatentMarkovSequence(gaussian_transition, 3, 1, initial=initial, covariates=torch.zeros(2, 2, 1))


@pytest.mark.parametrize("order", [1, 2])
def test_autoregressive_gaussian_sequence(order):
    torch.manual_seed(0)
    N, T, d, H = 5, 6, 3, 4
    combiner = Combiner(d, H, order, hidden_dim=8)
    summary = torch.randn(N, T, H)
    init = torch.randn(order, d, requires_grad=True)
    q = AutoregressiveGaussianSequence(combiner, summary, init)
    z = q.rsample()
    assert z.shape == (N, T, d) and q.has_rsample
    # Sequential reference for log q(z).
    states = [s.expand(N, d) for s in init.unbind(0)]
    expected = torch.zeros(N)
    for t in range(T):
        loc, scale = combiner(torch.stack(states[-order:], -2), summary[:, t])
        expected = expected + dist.Normal(loc, scale).log_prob(z[:, t]).sum(-1)
        states.append(z[:, t])
    assert torch.allclose(q.log_prob(z), expected, atol=1e-5)
    z.sum().backward()  # reparameterised: gradients reach the initial states
    assert init.grad is not None and init.grad.abs().sum() > 0
    assert q.rsample((2,)).shape == (2, N, T, d)


@pytest.mark.parametrize("order", [1, 3])
def test_initial_prior(order):
    torch.manual_seed(0)
    prior = InitialPrior(latent_dim=2, order=order, hidden_dim=8)
    aux_dist = prior.aux_prior((5,))
    assert aux_dist.batch_shape == (5,) and aux_dist.event_shape == (order, 2)
    aux = aux_dist.sample()
    cond = prior.conditional(aux)
    assert isinstance(cond, GaussianAutoregression)
    z = cond.rsample()
    assert z.shape == (5, order, 2)
    # Sequential reference for the autoregression.
    prev, expected = torch.zeros(5, 2), torch.zeros(5)
    for i in range(order):
        loc, scale = prior.conditional_net(torch.cat([aux[:, i], prev], -1))
        expected = expected + dist.Normal(loc, scale).log_prob(z[:, i]).sum(-1)
        prev = z[:, i]
    assert torch.allclose(cond.log_prob(z), expected, atol=1e-5)
    post = prior.aux_posterior(z)
    assert post.batch_shape == (5,) and post.event_shape == (order, 2)


def scalar_transition(history, covariates=None):
    """The scalar-state version of gaussian_transition: history ``batch + (j,)``, event shape ()."""
    loc = 0.5 * history[..., -1] - 0.2 * history[..., 0]
    if covariates is not None:
        loc = loc + covariates.sum(-1)
    return dist.Normal(loc, 0.3)


@pytest.mark.parametrize("mode", ["initial", "history"])
def test_scalar_states(mode):
    # event_dim=1: a 1-D latent has event shape (T,), the same density as the (T, 1) layout.
    N, T, j = 4, 6, 2
    cov = torch.randn(N, T, 3)
    if mode == "initial":
        scalar = LatentMarkovSequence(scalar_transition, T, j, initial=dist.Normal(torch.zeros(N, j), 1.0).to_event(1),
                                      covariates=cov, event_dim=1)
        vector = LatentMarkovSequence(gaussian_transition, T, j, covariates=cov,
                                      initial=dist.Normal(torch.zeros(N, j, 1), 1.0).to_event(2))
    else:
        history = torch.randn(N, j)
        scalar = LatentMarkovSequence(scalar_transition, T, j, history=history, covariates=cov, event_dim=1)
        vector = LatentMarkovSequence(gaussian_transition, T, j, history=history.unsqueeze(-1), covariates=cov)
    assert scalar.batch_shape == (N,) and scalar.event_shape == (T,)
    z = torch.randn(N, T)
    assert torch.allclose(scalar.log_prob(z), vector.log_prob(z.unsqueeze(-1)), atol=1e-5)
    torch.manual_seed(0)
    s = scalar.sample((2,))
    torch.manual_seed(0)
    assert s.shape == (2, N, T) and torch.allclose(s, vector.sample((2,)).squeeze(-1))
    with pytest.raises(ValueError, match="squeeze"):  # a (N, 1, T) value would give (N, N) log-densities
        scalar.log_prob(z.unsqueeze(-2))


def test_covariates_broadcast_against_the_initial_batch():
    # An enumerated regime in the covariates (K, 1, T, p) against a plate of series (N,): batch (K, N), each slice
    # the distribution of that regime.
    N, T, K = 4, 5, 3
    initial = dist.Normal(torch.zeros(N, 1, 2), 1.0).to_event(2)
    cov = torch.randn(K, 1, T, 1)
    seq = LatentMarkovSequence(gaussian_transition, T, 1, initial=initial, covariates=cov)
    assert seq.batch_shape == (K, N)
    z = torch.randn(N, T, 2)
    lp = seq.log_prob(z)
    for k in range(K):
        one = LatentMarkovSequence(gaussian_transition, T, 1, initial=initial, covariates=cov[k].expand(N, T, 1))
        assert torch.allclose(lp[k], one.log_prob(z), atol=1e-5)
    assert seq.sample().shape == (K, N, T, 2)
    with pytest.raises(ValueError, match="covariates"):
        LatentMarkovSequence(gaussian_transition, T, 1, initial=initial, covariates=torch.randn(N + 1, T, 1))
    with pytest.raises(ValueError, match="event_dim"):
        LatentMarkovSequence(gaussian_transition, T, 1, initial=initial, event_dim=3)


def test_autoregressive_gaussian_sequence_of_scalar_states():
    # event_dim=1: event shape (T,), the numbers of the (T, 1) layout with the same combiner and noise.
    N, T, H = 3, 5, 4
    combiner = Combiner(1, H, 2, hidden_dim=8)
    summary, init = torch.randn(N, T, H), torch.randn(2)
    scalar = AutoregressiveGaussianSequence(combiner, summary, init, event_dim=1)
    vector = AutoregressiveGaussianSequence(combiner, summary, init.unsqueeze(-1))
    assert scalar.batch_shape == (N,) and scalar.event_shape == (T,) and scalar.support.event_dim == 1
    torch.manual_seed(0)
    z = scalar.rsample((2,))
    torch.manual_seed(0)
    assert z.shape == (2, N, T) and torch.allclose(z, vector.rsample((2,)).squeeze(-1))
    assert torch.allclose(scalar.log_prob(z), vector.log_prob(z.unsqueeze(-1)))
