import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyroseq.distributions import DiffusionLikelihood


def gaussian_denoiser(x, sigma, context=None):
    return x / (1 + sigma.reshape((-1,) + (1,) * (x.dim() - 1)) ** 2)


def context_denoiser(x, sigma, context):
    # Exact denoiser of N(context, I): shifts the Gaussian one by the context mean.
    s = sigma.reshape((-1,) + (1,) * (x.dim() - 1))
    return context + (x - context) / (1 + s**2)


@pytest.mark.parametrize("d", [1, 4])
def test_log_prob_is_minus_a_tight_bound(d):
    # Acceptance of the diffusion core: mean of -log_prob over 20,000 draws within [nll - 3 se, nll + 0.05 d].
    torch.manual_seed(0)
    x = torch.randn(20000, d, dtype=torch.float64)
    lik = DiffusionLikelihood(gaussian_denoiser, event_shape=(d,), sigma_data=1.0)
    gap = -lik.log_prob(x) + dist.Normal(0.0, 1.0).expand([d]).to_event(1).log_prob(x)
    se = gap.std() / math.sqrt(len(gap))
    assert -3 * se <= gap.mean() <= 0.05 * d


@pytest.mark.parametrize("sampler,kwargs", [("heun", {}), ("ddpm", {"num_steps": 500})])
@pytest.mark.parametrize("d", [1, 4])
def test_samples_recover_standard_normal(sampler, kwargs, d):
    torch.manual_seed(0)
    lik = DiffusionLikelihood(gaussian_denoiser, event_shape=(d,), num_steps=20, sampler=sampler,
                              sampler_kwargs=kwargs, sample_chunk_size=1500)
    x = lik.sample((4000,)).double()
    assert x.shape == (4000, d)
    assert x.mean(0).abs().max() < 0.05
    assert (x.var(0) - 1).abs().max() < 0.05


def test_context_conditions_samples_and_log_prob():
    torch.manual_seed(0)
    ctx = torch.tensor([[-3.0, 0.0], [3.0, 1.0]], dtype=torch.float64)
    lik = DiffusionLikelihood(context_denoiser, event_shape=(2,), context=ctx)
    assert lik.batch_shape == (2,)
    x = lik.sample((3000,))
    assert x.shape == (3000, 2, 2)
    assert torch.allclose(x.mean(0), ctx, atol=0.08)
    value = ctx + torch.randn(20000, 2, 2, dtype=torch.float64)
    exact = dist.Normal(ctx, 1.0).to_event(1).log_prob(value)
    gap = -lik.log_prob(value) - (-exact)
    assert gap.shape == (20000, 2)
    assert gap.mean().abs() < 0.05


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)])
@pytest.mark.parametrize("sample_shape", [(), (4,), (2, 1)])
@pytest.mark.parametrize("event_shape", [(1,), (3,), (5, 2)])
def test_shapes(batch_shape, sample_shape, event_shape):
    lik = DiffusionLikelihood(gaussian_denoiser, event_shape, num_noise_draws=2, num_steps=3,
                              batch_shape=batch_shape)
    assert lik.batch_shape == batch_shape and lik.event_shape == event_shape
    x = lik.sample(sample_shape)
    assert x.shape == sample_shape + batch_shape + event_shape
    assert lik.log_prob(x).shape == sample_shape + batch_shape
    big = lik.expand((4,) + batch_shape)
    assert big.batch_shape == (4,) + batch_shape
    assert big.sample().shape == (4,) + batch_shape + event_shape
    assert big.log_prob(x).shape == torch.broadcast_shapes(sample_shape + batch_shape,
                                                           (4,) + batch_shape)
    assert lik.support.event_dim == len(event_shape)
    assert not lik.has_rsample


def test_expand_with_context_and_pyro_plate():
    ctx = torch.randn(3, 2)
    lik = DiffusionLikelihood(context_denoiser, (2,), context=ctx, num_steps=3)
    assert lik.expand((5, 3)).sample().shape == (5, 3, 2)

    def model(x):
        with pyro.plate("data", 3):
            pyro.sample("x", DiffusionLikelihood(context_denoiser, (2,), context=ctx), obs=x)

    tr = pyro.poutine.trace(model).get_trace(torch.randn(3, 2))
    tr.compute_log_prob()
    assert tr.nodes["x"]["log_prob"].shape == (3,)


def test_bad_inputs_raise_value_errors():
    lik = DiffusionLikelihood(gaussian_denoiser, (3,))
    with pytest.raises(ValueError, match="NaN"):
        lik.log_prob(torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        lik.log_prob(torch.tensor([0.0, float("inf"), 1.0]))
    with pytest.raises(ValueError, match="event_shape"):
        lik.log_prob(torch.zeros(4, 2))
    for name in ["sigma_min", "sigma_max", "sigma_data"]:
        with pytest.raises(ValueError, match=name):
            DiffusionLikelihood(gaussian_denoiser, (3,), **{name: 0.0})
    with pytest.raises(ValueError, match="sigma_min"):
        DiffusionLikelihood(gaussian_denoiser, (3,), sigma_min=10.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="num_noise_draws"):
        DiffusionLikelihood(gaussian_denoiser, (3,), num_noise_draws=0)
    with pytest.raises(ValueError, match="num_steps"):
        DiffusionLikelihood(gaussian_denoiser, (3,), num_steps=0)
    with pytest.raises(ValueError, match="event_shape"):
        DiffusionLikelihood(gaussian_denoiser, (3, 0))
    with pytest.raises(ValueError, match="denoiser"):
        DiffusionLikelihood("not callable", (3,))
    with pytest.raises(ValueError, match="objective"):
        DiffusionLikelihood(gaussian_denoiser, (3,), objective="mse")
    with pytest.raises(ValueError, match="context"):
        DiffusionLikelihood(gaussian_denoiser, (3,), context=torch.tensor([[float("nan")] * 3]))


def test_edm_objective_is_a_different_documented_surrogate():
    lik = DiffusionLikelihood(gaussian_denoiser, (2,), objective="edm")
    lp = lik.log_prob(torch.randn(7, 2))
    assert lp.shape == (7,) and (lp <= 0).all()  # minus a non-negative loss


@pytest.mark.parametrize("edm_noise", [(-1.2, 1.2), (-2.0, 0.5), (0.3, 2.0)])
def test_edm_objective_draws_its_noise_levels_from_edm_noise(edm_noise):
    # The EDM surrogate's noise levels are log-normal with (P_mean, P_std) = edm_noise, also after expand.
    sigmas = []

    def den(x, sigma, context=None):
        sigmas.append(sigma)
        return gaussian_denoiser(x, sigma)

    torch.manual_seed(0)
    lik = DiffusionLikelihood(den, (2,), objective="edm", edm_noise=edm_noise).expand((20000,))
    assert lik.edm_noise == edm_noise
    lik.log_prob(torch.randn(20000, 2))
    log_sigma = torch.cat(sigmas).log().double()
    assert abs(log_sigma.mean().item() - edm_noise[0]) < 4 * edm_noise[1] / math.sqrt(len(log_sigma))
    assert log_sigma.std().item() == pytest.approx(edm_noise[1], rel=0.03)


@pytest.mark.parametrize("edm_noise,match", [((-1.2,), "pair"), ("a", "pair"), ((-1.2, 0.0), "P_std"),
                                             ((float("nan"), 1.2), "P_mean"), ((0.0, float("inf")), "P_std")])
def test_bad_edm_noise_is_refused(edm_noise, match):
    with pytest.raises(ValueError, match=match):
        DiffusionLikelihood(gaussian_denoiser, (2,), objective="edm", edm_noise=edm_noise)


def test_sampling_memory_is_chunked():
    calls = []

    def den(x, sigma, context=None):
        calls.append(x.shape[0])
        return gaussian_denoiser(x, sigma)

    DiffusionLikelihood(den, (2,), num_steps=2, sample_chunk_size=100).sample((250,))
    assert max(calls) == 100
