"""Shared behaviour of the deep state-space models (DKF and DDSSM)."""

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.util import torch_item
from pyro.poutine.util import site_is_subsample

from pyroseq.models import DDSSM, DKF

SMALL = dict(rnn_dim=8, hidden_dim=8)
MODELS = {
    "dkf": lambda **kw: DKF(transition_dim=8, **SMALL, **kw),
    "ddssm": lambda **kw: DDSSM(denoiser_dim=8, denoiser_blocks=1, num_steps=3, **SMALL, **kw),
}


def make(name, obs_dim=2, latent_dim=3, order=1, covariate_dim=0):
    pyro.set_rng_seed(0)
    return MODELS[name](obs_dim=obs_dim, latent_dim=latent_dim, order=order, covariate_dim=covariate_dim)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("covariate_dim", [0, 2])
def test_sites_shapes_and_elbo(name, order, covariate_dim):
    N, T, C, d = 4, 6, 2, 3
    model = make(name, C, d, order, covariate_dim)
    x = torch.randn(N, T, C)
    u = torch.randn(N, T, covariate_dim) if covariate_dim else None
    guide_trace = poutine.trace(model.guide).get_trace(x, covariates=u)
    model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x, covariates=u)
    guide_sites = {n for n, s in guide_trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)}
    model_latents = {n for n, s in model_trace.nodes.items()
                     if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)}
    assert guide_sites == model_latents == set(model.latent_sites) == {"z", "z_init_aux"}
    assert guide_trace.nodes["z"]["value"].shape == (N, T, d)
    assert guide_trace.nodes["z_init_aux"]["value"].shape == (N, order, d)
    assert model_trace.nodes["x"]["value"].shape == (N, T, C)
    model_trace.compute_log_prob()
    for site in ("z", "z_init_aux", "x"):
        assert model_trace.nodes[site]["log_prob"].shape == (N,)
    loss = Trace_ELBO().differentiable_loss(model.model, model.guide, x, covariates=u)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize("name", list(MODELS))
def test_missing_data_is_ignored(name):
    model = make(name)
    x = torch.randn(3, 5, 2)
    x[0, 1, 0] = float("nan")
    x[2, :3] = float("nan")
    other = x.clone()
    other[torch.isnan(x)] = 123.0
    mask = ~torch.isnan(x)

    def loss_of(data, **kwargs):
        pyro.set_rng_seed(1)
        model.zero_grad()
        loss = Trace_ELBO().differentiable_loss(model.model, model.guide, data, **kwargs)
        loss.backward()
        return loss, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    loss_nan, grads_nan = loss_of(x)
    loss_masked, grads_masked = loss_of(other, mask=mask)
    assert torch.isfinite(loss_nan) and all(torch.isfinite(g).all() for g in grads_nan)
    assert torch.allclose(loss_nan, loss_masked)
    assert all(torch.allclose(a, b) for a, b in zip(grads_nan, grads_masked))


@pytest.mark.parametrize("name", list(MODELS))
def test_time_parallel_transition_is_one_call(name):
    model = make(name)
    calls = []
    model.transition.register_forward_hook(lambda *args: calls.append(1))
    guide_trace = poutine.trace(model.guide).get_trace(torch.randn(4, 9, 2))
    calls.clear()
    trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(torch.randn(4, 9, 2))
    trace.compute_log_prob()
    assert len(calls) == 1


@pytest.mark.parametrize("name", list(MODELS))
def test_generate_and_forecast_model(name):
    model = make(name, order=2)
    x, z = model.generate(5, 7, return_latents=True)
    assert x.shape == (5, 7, 2) and z.shape == (5, 7, 3)
    trace = poutine.trace(model.forecast_model).get_trace(torch.randn(5, 4, 2), 3)
    assert trace.nodes["z_future"]["value"].shape == (5, 3, 3)
    assert trace.nodes["x_future"]["value"].shape == (5, 3, 2)


@pytest.mark.parametrize("name", list(MODELS))
def test_initialize_standardizes(name):
    model = make(name)
    x = torch.randn(50, 10, 2) * torch.tensor([3.0, 0.5]) + torch.tensor([10.0, -1.0])
    x[0, 0, 0] = float("nan")
    model.initialize(x)
    observed = x[~torch.isnan(x[..., 0])][:, 0]
    assert torch.allclose(model.x_loc[0], observed.mean())
    assert torch.allclose(model.x_scale[0], observed.std())
    with pytest.raises(ValueError, match="constant channels"):
        model.initialize(torch.ones(4, 5, 2))


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("bad,match", [
    (torch.randn(5, 2), "rank 3"),
    (torch.randn(2, 5, 3), "2 channels"),
    (torch.randn(2, 1, 2), "too short"),
    (torch.tensor([[[float("inf"), 0.0]]]).expand(1, 3, 2), "infinite"),
    (torch.cat([torch.randn(1, 3, 2), torch.full((1, 3, 2), float("nan"))]), "no observed value"),
    (torch.randint(0, 3, (2, 4, 2)), "floating point"),
])
def test_bad_inputs(name, bad, match):
    model = make(name, order=2)
    with pytest.raises(ValueError, match=match):
        model.model(bad)
    with pytest.raises(ValueError, match=match):
        model.guide(bad)


@pytest.mark.parametrize("name", list(MODELS))
def test_covariate_errors(name):
    model = make(name, covariate_dim=2)
    with pytest.raises(ValueError, match="covariates of shape"):
        model.model(torch.randn(2, 4, 2))
    with pytest.raises(ValueError, match="covariates must have shape"):
        model.model(torch.randn(2, 4, 2), covariates=torch.randn(2, 3, 2))
    with pytest.raises(ValueError, match="covariate_dim=0"):
        make(name).model(torch.randn(2, 4, 2), covariates=torch.randn(2, 4, 2))


@pytest.mark.parametrize("name", list(MODELS))
def test_ema_and_param_groups(name):
    model = make(name)
    groups = model.param_groups()
    assert set(groups) == {"encoder", "decoder", "initial", "transition" if name == "dkf" else "denoiser"}
    ids = [id(p) for ps in groups.values() for p in ps]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(ids) == sorted(trainable)  # every trainable parameter in exactly one group
    assert not any(p.requires_grad for p in model.transition_ema.parameters())
    with torch.no_grad():
        for p in model.transition.parameters():
            p.add_(1.0)
    model.ema_decay = 0.5
    ema_before = [p.clone() for p in model.transition_ema.parameters()]
    model.on_step(0)  # first update: decay min(0.5, 1/10) = 0.1
    for p_ema, p_old, p in zip(model.transition_ema.parameters(), ema_before, model.transition.parameters()):
        assert torch.allclose(p_ema, 0.1 * p_old + 0.9 * p)
    assert model._transition_module(sampling=True) is model.transition_ema
    assert model._transition_module(sampling=False) is model.transition


def test_ddssm_options():
    with pytest.raises(ValueError, match="baseline"):
        DDSSM(1, 1, baseline="linear")
    with pytest.raises(ValueError, match="objective"):
        DDSSM(1, 1, objective="score")
    with pytest.raises(ValueError, match="latent_dim"):
        DKF(1, 0)
    model = make("ddssm")
    model.objective = "edm"
    loss = Trace_ELBO().differentiable_loss(model.model, model.guide, torch.randn(3, 4, 2))
    assert torch.isfinite(loss) and torch_item(loss) != 0


def test_ddssm_split_loss_unanneals_the_denoiser():
    from pyroseq.inference import scale_sites

    x = torch.randn(3, 5, 2)

    def grads(split, weight):
        model = make("ddssm")
        model.split_loss, model.kl_weight = split, weight
        pyro.set_rng_seed(4)
        with scale_sites(sites=model.latent_sites, scale=weight):
            Trace_ELBO().differentiable_loss(model.model, model.guide, x).backward()
        return ([p.grad.clone() for p in model.transition.parameters()],
                [p.grad.clone() for p in model.combiner.parameters()])

    den_full, enc_full = grads(False, 1.0)
    den_split, enc_split = grads(True, 0.25)
    den_plain, enc_plain = grads(False, 0.25)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(den_full, den_split))
    assert all(torch.allclose(a, 0.25 * b, rtol=1e-4, atol=1e-6) for a, b in zip(den_plain, den_full))
    assert all(torch.allclose(a, b) for a, b in zip(enc_split, enc_plain))  # encoder: annealed as usual
