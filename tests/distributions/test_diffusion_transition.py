import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from pyro.optim import Adam

from pyroseq.diffusion import EDMPrecond
from pyroseq.distributions import DiffusionTransition, EvaluationDensity
from pyroseq.models import LatentMarkovSequence


class LinearNet(torch.nn.Module):
    """F(x_in, c_noise, history) = a * x_in + b * last state: tiny but learnable."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(()))
        self.b = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, c_noise, context):
        history = context[0] if isinstance(context, tuple) else context
        return self.a * x + self.b * history[:, -1, :]


def exact_ar1_denoiser(phi):
    """Exact denoiser of z_t | z_{t-1} ~ N(phi z_{t-1}, 1)."""

    def den(x, sigma, context):
        mean = phi * context[:, -1, :]
        return mean + (x - mean) / (1 + sigma.reshape(-1, 1) ** 2)

    return den


@pytest.mark.parametrize("batch_shape", [(), (4,), (3, 5)])
@pytest.mark.parametrize("order,d", [(1, 1), (2, 3)])
@pytest.mark.parametrize("baseline", ["none", "persistence"])
def test_shapes(batch_shape, order, d, baseline):
    history = torch.randn(batch_shape + (order, d))
    trans = DiffusionTransition(lambda x, s, c: x, history, baseline=baseline, num_steps=3,
                                num_noise_draws=2)
    assert trans.batch_shape == batch_shape and trans.event_shape == (d,)
    z = trans.sample((2,))
    assert z.shape == (2,) + batch_shape + (d,)
    assert trans.log_prob(z).shape == (2,) + batch_shape
    assert trans.expand((6,) + batch_shape).sample().shape == (6,) + batch_shape + (d,)


def test_exact_denoiser_gives_ar1_samples_and_bound():
    torch.manual_seed(0)
    history = torch.full((20000, 1, 1), 2.0, dtype=torch.float64)
    for baseline, den in [("none", exact_ar1_denoiser(0.5)),
                          ("persistence", exact_ar1_denoiser(-0.5))]:
        # With the persistence baseline the residual z_t - z_{t-1} ~ N(-0.5 z_{t-1}, 1).
        trans = DiffusionTransition(den, history, baseline=baseline)
        z = trans.sample()
        assert abs(z.mean().item() - 1.0) < 0.03 and abs(z.var().item() - 1.0) < 0.05
        value = 1.0 + torch.randn(20000, 1, dtype=torch.float64)
        exact = dist.Normal(1.0, 1.0).log_prob(value).squeeze(-1)
        assert (-trans.log_prob(value) + exact).mean().abs() < 0.05


def test_covariates_reach_the_denoiser():
    seen = {}

    def den(x, sigma, context):
        seen["context"] = context
        return x

    h, u = torch.randn(4, 2, 3), torch.randn(4, 5)
    DiffusionTransition(den, h, covariates=u, num_noise_draws=1).log_prob(torch.randn(4, 3))
    hist, cov = seen["context"]
    assert hist.shape == (8, 2, 3) and cov.shape == (8, 5)
    with pytest.raises(ValueError, match="covariates"):
        DiffusionTransition(den, h, covariates=torch.randn(3, 5))


def test_bad_history_raises():
    with pytest.raises(ValueError, match="history"):
        DiffusionTransition(lambda x, s, c: x, torch.randn(3))
    with pytest.raises(ValueError, match="history"):
        DiffusionTransition(lambda x, s, c: x, torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="baseline"):
        DiffusionTransition(lambda x, s, c: x, torch.randn(2, 1, 1), baseline="linear")


def test_trains_in_plate_and_markov_with_normal_guide():
    # Acceptance of the diffusion core: a DiffusionTransition inside pyro.plate + pyro.markov with a Normal guide
    # trains under validation with Trace_ELBO, and the model/guide sites match.
    torch.manual_seed(0)
    pyro.clear_param_store()
    N, T = 16, 6
    z_true = torch.zeros(N, T)
    for t in range(1, T):
        z_true[:, t] = 0.8 * z_true[:, t - 1] + torch.randn(N) * 0.5
    x = z_true + 0.1 * torch.randn(N, T)
    denoiser = EDMPrecond(LinearNet(), sigma_data=1.0)

    def model(x):
        pyro.module("denoiser", denoiser)
        with pyro.plate("seqs", N):
            z_prev = pyro.sample("z_0", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
            pyro.sample("x_0", dist.Normal(z_prev, 0.1).to_event(1), obs=x[:, :1])
            for t in pyro.markov(range(1, T)):
                z = pyro.sample(f"z_{t}", DiffusionTransition(denoiser, z_prev.unsqueeze(-2),
                                                              num_noise_draws=2))
                pyro.sample(f"x_{t}", dist.Normal(z, 0.1).to_event(1), obs=x[:, t:t + 1])
                z_prev = z

    def guide(x):
        loc = pyro.param("loc", x.clone())
        scale = pyro.param("scale", torch.full((N, T), 0.1), constraint=dist.constraints.positive)
        with pyro.plate("seqs", N):
            for t in pyro.markov(range(T)):
                pyro.sample(f"z_{t}", dist.Normal(loc[:, t:t + 1], scale[:, t:t + 1]).to_event(1))

    svi = SVI(model, guide, Adam({"lr": 0.02}), Trace_ELBO())
    losses = [svi.step(x) for _ in range(150)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-20:]) / 20 < sum(losses[:20]) / 20
    model_tr = pyro.poutine.trace(pyro.poutine.replay(model, pyro.poutine.trace(guide).get_trace(
        x))).get_trace(x)
    guide_tr = pyro.poutine.trace(guide).get_trace(x)
    model_latents = {n for n, s in model_tr.nodes.items()
                     if s["type"] == "sample" and not s["is_observed"]}
    guide_latents = {n for n, s in guide_tr.nodes.items() if s["type"] == "sample"}
    assert model_latents == guide_latents
    # The learned transition pulls towards the previous state (b > 0).
    assert denoiser.net.b.item() > 0


def regime_denoiser(phi):
    """Exact denoiser of z_t ~ N(phi[s] z_{t-1}, 1) given the one-hot regime s as covariates."""

    def den(x, sigma, context):
        history, regime = context
        mean = (regime @ phi).unsqueeze(-1) * history[:, -1]
        return mean + (x - mean) / (1 + sigma.reshape(-1, 1) ** 2)

    return den


def regime_data(phi, probs, N, T):
    s = torch.distributions.Categorical(probs).sample((N,))
    x = torch.zeros(N, T, dtype=torch.float64)
    x[:, 0] = torch.randn(N)
    for t in range(1, T):
        x[:, t] = phi[s] * x[:, t - 1] + torch.randn(N)
    return x


@pytest.mark.parametrize("vectorised", [False, True])
def test_enumerated_regime_in_covariates_matches_manual_sum(vectorised):
    # A regime per series, enumerated by TraceEnum_ELBO, enters the transition through the covariates: the
    # covariates (K, 1, K) broadcast against the history (N, 1) to batch shape (K, N). The loss equals the manual
    # sum over regimes, log sum_k p(k) p(x | k), computed with the same noise.
    phi = torch.tensor([0.9, -0.5], dtype=torch.float64)
    probs = torch.tensor([0.3, 0.7], dtype=torch.float64)
    N, T, K = 5, 6, 2
    x = regime_data(phi, probs, N, T)
    den = regime_denoiser(phi)

    def transition(history, covariates):
        return DiffusionTransition(den, history, covariates, event_dim=0, num_noise_draws=256)

    def log_likelihood(regime):  # regime: one-hot, (K, 1, K) enumerated or (K, N, K) by hand
        if vectorised:
            cov = regime.unsqueeze(-2).expand(regime.shape[:-1] + (T - 1, K))
            return LatentMarkovSequence(transition, T - 1, 1, history=x[:, :1], covariates=cov,
                                        event_dim=1).log_prob(x[:, 1:])
        return sum(transition(x[:, t - 1:t], regime).log_prob(x[:, t]) for t in range(1, T))

    @config_enumerate
    def model():
        with pyro.plate("series", N):
            s = pyro.sample("s", dist.Categorical(probs))
            regime = torch.nn.functional.one_hot(s, K).to(x.dtype)
            if vectorised:
                cov = regime.unsqueeze(-2).expand(regime.shape[:-1] + (T - 1, K))
                pyro.sample("x", LatentMarkovSequence(transition, T - 1, 1, history=x[:, :1], covariates=cov,
                                                      event_dim=1), obs=x[:, 1:])
            else:
                for t in pyro.markov(range(1, T)):
                    pyro.sample(f"x_{t}", transition(x[:, t - 1:t], regime), obs=x[:, t])

    pyro.set_rng_seed(1)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None)
    assert math.isfinite(loss)
    pyro.set_rng_seed(1)
    regimes = torch.eye(K, dtype=x.dtype).unsqueeze(1).expand(K, N, K)
    log_joint = probs.log().unsqueeze(-1) + log_likelihood(regimes)
    assert log_joint.shape == (K, N)
    assert loss == pytest.approx(-log_joint.logsumexp(0).sum().item(), rel=1e-9)
    # and, as the bound is tight for the exact denoiser, close to the exact marginal likelihood
    exact = probs.log().unsqueeze(-1) + dist.Normal(phi[:, None, None] * x[:, :-1], 1.0).log_prob(x[:, 1:]).sum(-1)
    assert abs(loss + exact.logsumexp(0).sum().item()) < 3.0  # 4 standard deviations of the bound's noise


def test_markov_switching_regime_matches_forward_algorithm():
    # A Markov-switching regime s_t enumerated in pyro.markov: the covariates carry the regime's enumeration dims,
    # the history the plate. Scored by the probability-flow ODE (deterministic), the TraceEnum_ELBO loss is the
    # forward algorithm's marginal likelihood of the exact HMM.
    phi = torch.tensor([0.9, -0.5], dtype=torch.float64)
    trans = torch.tensor([[0.8, 0.2], [0.3, 0.7]], dtype=torch.float64)
    init = torch.tensor([0.5, 0.5], dtype=torch.float64)
    N, T, K = 3, 5, 2
    x = regime_data(phi, init, N, T)
    den = regime_denoiser(phi)

    @config_enumerate
    def model():
        with pyro.plate("series", N):
            s = pyro.sample("s_0", dist.Categorical(init))
            for t in pyro.markov(range(1, T)):
                s = pyro.sample(f"s_{t}", dist.Categorical(trans[s]))
                regime = torch.nn.functional.one_hot(s, K).to(x.dtype)
                pyro.sample(f"x_{t}", DiffusionTransition(den, x[:, t - 1:t], regime, event_dim=0), obs=x[:, t])

    with EvaluationDensity("ode", num_steps=32):
        loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None)
    log_alpha = init.log().expand(N, K)  # forward algorithm over s_0, ..., s_{T-1}
    for t in range(1, T):
        emit = dist.Normal(phi * x[:, t - 1:t], 1.0).log_prob(x[:, t:t + 1])  # (N, K)
        log_alpha = (log_alpha.unsqueeze(-1) + trans.log()).logsumexp(-2) + emit
    assert loss == pytest.approx(-log_alpha.logsumexp(-1).sum().item(), rel=2e-3)


def test_covariates_and_history_broadcast():
    torch.manual_seed(0)
    den = regime_denoiser(torch.tensor([0.9, -0.5]))
    history, regime = torch.randn(4, 1, 1), torch.eye(2).unsqueeze(1)  # (N, j, d), (K, 1, K)
    trans = DiffusionTransition(den, history, regime, num_noise_draws=2)
    assert trans.batch_shape == (2, 4) and trans.event_shape == (1,)
    value = torch.randn(4, 1)
    full = DiffusionTransition(den, history.expand(2, 4, 1, 1), regime.expand(2, 4, 2), num_noise_draws=2)
    pyro.set_rng_seed(0)
    lp = trans.log_prob(value)
    pyro.set_rng_seed(0)
    assert torch.equal(lp, full.log_prob(value))
    assert trans.sample((3,)).shape == (3, 2, 4, 1)


def test_scalar_states_have_event_shape_empty():
    # event_dim=0: history (N, j), values (N,); the same numbers as the (d = 1)-event layout.
    torch.manual_seed(0)
    den = exact_ar1_denoiser(0.5)
    history = torch.randn(5, 2)
    scalar = DiffusionTransition(den, history, event_dim=0, baseline="persistence", num_noise_draws=2)
    vector = DiffusionTransition(den, history.unsqueeze(-1), baseline="persistence", num_noise_draws=2)
    assert scalar.batch_shape == (5,) and scalar.event_shape == ()
    assert scalar.history.shape == (5, 2) and scalar.support.event_dim == 0
    value = torch.randn(5)
    pyro.set_rng_seed(0)
    lp = scalar.log_prob(value)
    pyro.set_rng_seed(0)
    assert torch.equal(lp, vector.log_prob(value.unsqueeze(-1)))
    pyro.set_rng_seed(0)
    z = scalar.sample((3,))
    pyro.set_rng_seed(0)
    assert z.shape == (3, 5) and torch.equal(z, vector.sample((3,)).squeeze(-1))


def test_forgotten_squeeze_raises_under_validation():
    # A (N, 1) value scored by a scalar-state transition of batch (N,) would give (N, N) log-densities.
    den = exact_ar1_denoiser(0.5)
    value = torch.randn(5, 1)
    with pytest.raises(ValueError, match="squeeze"):
        DiffusionTransition(den, torch.randn(5, 1), event_dim=0).log_prob(value)
    with pyro.validation_enabled(False):
        assert DiffusionTransition(den, torch.randn(5, 1), event_dim=0).log_prob(value).shape == (5, 5)

    def model():  # the same mistake at a Pyro site in a plate
        with pyro.plate("series", 5):
            pyro.sample("z", DiffusionTransition(den, torch.randn(5, 1), event_dim=0), obs=value)

    with pytest.raises(ValueError, match="squeeze"):
        pyro.poutine.trace(model).get_trace().compute_log_prob()


def test_callable_baseline_sees_the_history_before_broadcasting():
    seen = []

    def baseline(history):
        seen.append(history.shape)
        return 0.5 * history[..., -1, :]

    history, regime = torch.randn(4, 1, 1), torch.eye(2).unsqueeze(1)
    trans = DiffusionTransition(regime_denoiser(torch.tensor([0.9, -0.5])), history, regime, baseline=baseline)
    assert seen == [(4, 1, 1)] and trans.loc.shape == (2, 4, 1)
    with pytest.raises(ValueError, match="baseline"):
        DiffusionTransition(lambda x, s, c: x, history, baseline=lambda h: h)
