import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyroseq.diffusion import EDMPrecond
from pyroseq.distributions import DiffusionTransition


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
