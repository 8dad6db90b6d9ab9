import io
import math

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyroseq.distributions import DiffusionLikelihood
from pyroseq.inference import fit
from pyroseq.models import DiMTS
from pyroseq.models.dimts import correlation_mmd, fourier_loss, window_correlations

NET = dict(hidden_dim=8, d_state=2, num_decoder_layers=1)


def small_model(obs_dim=3, length=8, **kwargs):
    return DiMTS(obs_dim, length, num_steps=3, **NET, **kwargs)


def block_windows(num=40, length=8, assignment=(0, 1, 0, 1), seed=0):
    """Windows in [-1, 1] whose channels follow two shared factors (channels 0, 2 and 1, 3 correlated)."""
    g = torch.Generator().manual_seed(seed)
    factors = torch.randn(num, length, 2, generator=g)
    x = factors[..., list(assignment)] + 0.2 * torch.randn(num, length, len(assignment), generator=g)
    return x / x.abs().max()


@pytest.mark.parametrize("objective", ["edm", "bound"])
@pytest.mark.parametrize("aux_losses", [False, True])
def test_model_trace(objective, aux_losses):
    m = small_model(objective=objective, aux_losses=aux_losses)
    x = torch.rand(5, 8, 3) * 2 - 1
    tr = pyro.poutine.trace(m.model).get_trace(x)
    site = tr.nodes["x"]
    assert site["is_observed"] and isinstance(site["fn"], DiffusionLikelihood)
    assert site["fn"].objective == objective and site["fn"].sigma_data == 0.5
    assert site["fn"].event_shape == (8, 3) and site["fn"].batch_shape == (5,)
    assert torch.equal(site["value"], x)
    assert site["fn"].denoiser is m.denoiser and m.denoiser.net is m.net
    assert ("fourier" in tr.nodes) == aux_losses and ("correlation_mmd" in tr.nodes) == aux_losses
    if aux_losses:
        assert tr.nodes["fourier"]["fn"].batch_shape == (5,)
        assert tr.nodes["correlation_mmd"]["fn"].batch_shape == ()
    loss = Trace_ELBO().differentiable_loss(m.model, m.guide, x)
    assert torch.isfinite(loss)
    loss.backward()
    assert m.net.temporal.readout.weight.grad.abs().sum() > 0


def test_aux_weights_zero_drop_the_sites():
    m = small_model(aux_losses=True, fourier_weight=0.0, correlation_weight=0.0)
    tr = pyro.poutine.trace(m.model).get_trace(torch.rand(4, 8, 3) * 2 - 1)
    assert "fourier" not in tr.nodes and "correlation_mmd" not in tr.nodes
    assert small_model().fourier_weight == pytest.approx(math.sqrt(8) / 5)


def test_auxiliary_loss_values():
    # With the network at zero the denoiser is c_skip * x_noisy; recompute the terms by hand.
    m = small_model(aux_losses=True, correlation_weight=1e-3)
    x = block_windows(6, assignment=(0, 1, 1))
    pyro.set_rng_seed(5)
    fourier, corr = m.auxiliary_losses(x)
    pyro.set_rng_seed(5)
    sigma = (torch.randn(6) * 1.2 - 1.2).exp()
    noise = torch.randn_like(x)
    x0_hat = (x + sigma[:, None, None] * noise) * (0.25 / (sigma**2 + 0.25))[:, None, None]
    weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    expected = m.fourier_weight * 0.5 * weight * (x0_hat - x).pow(2).sum((1, 2)) / 8  # Parseval
    assert torch.allclose(fourier, expected, rtol=1e-4)
    mmd = correlation_mmd(window_correlations(x0_hat), window_correlations(x))
    assert torch.allclose(corr, 1e-3 * 6 * 0.5 * 8 * 3 * mmd, rtol=1e-4)


def test_fourier_loss():
    torch.manual_seed(0)
    a, b = torch.randn(3, 10, 2), torch.randn(3, 10, 2)
    assert torch.allclose(fourier_loss(a, b), (a - b).pow(2).sum((1, 2)) / 10, rtol=1e-5)
    spec = np.fft.fft((a - b).numpy(), axis=1) / 10
    expected = np.abs(spec.real).sum((1, 2)) + np.abs(spec.imag).sum((1, 2))
    assert np.allclose(fourier_loss(a, b, norm="l1").numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="norm"):
        fourier_loss(a, b, norm="l3")


def test_window_correlations_and_mmd():
    torch.manual_seed(1)
    x = torch.randn(4, 12, 3, dtype=torch.float64)
    corr = window_correlations(x)
    for i in range(4):
        r = np.corrcoef(x[i].numpy().T)
        assert np.allclose(corr[i].numpy(), r[np.triu_indices(3, 1)])
    a, b = torch.randn(20, 3), torch.randn(25, 3) + 1.0
    assert correlation_mmd(a, a).abs() < 1e-6
    assert correlation_mmd(a, b) > 0.1
    assert torch.allclose(correlation_mmd(a, b), correlation_mmd(b, a))
    assert torch.allclose(correlation_mmd(a, b, bandwidth=2.0), correlation_mmd(b, a, bandwidth=2.0))


def test_data_range_mapping():
    m = small_model(data_range=(0.0, 1.0))
    x = torch.rand(4, 8, 3)
    tr = pyro.poutine.trace(m.model).get_trace(x)
    assert torch.allclose(tr.nodes["x"]["value"], 2 * x - 1)
    g = m.generate(5, seed=0)
    assert g.min() >= 0 and g.max() <= 1


def test_initialize_derives_channel_order_and_saves_it():
    x = block_windows()
    m = DiMTS(4, 8, num_steps=3, **NET)
    m.initialize(x)
    order = m.channel_order.tolist()
    assert {frozenset(order[:2]), frozenset(order[2:])} == {frozenset({0, 2}), frozenset({1, 3})}
    assert torch.equal(m.net_ema.channel_order, m.channel_order)
    buffer = io.BytesIO()
    torch.save(m.state_dict(), buffer)
    buffer.seek(0)
    fresh = DiMTS(4, 8, num_steps=3, **NET)
    fresh.load_state_dict(torch.load(buffer))
    assert fresh.channel_order.tolist() == order and fresh.net_ema.channel_order.tolist() == order
    # an explicit order is kept by initialize
    fixed = DiMTS(4, 8, channel_order=[3, 2, 1, 0], **NET)
    fixed.initialize(x)
    assert fixed.channel_order.tolist() == [3, 2, 1, 0]


def test_fit_trains_denoiser_and_ema():
    x = block_windows(30)
    m = DiMTS(4, 8, num_steps=3, ema_decay=0.9, **NET)
    w0 = m.net.temporal.embed.weight.detach().clone()
    losses = fit(m, x, num_steps=4, batch_size=8, progress=False)
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert int(m.ema_updates) == 4
    assert not torch.equal(m.net.temporal.embed.weight, w0)
    assert not torch.equal(m.net_ema.temporal.embed.weight, m.net.temporal.embed.weight)
    assert m.sampling_denoiser() is m.denoiser_ema and m.sampling_denoiser(use_ema=False) is m.denoiser
    groups = m.param_groups()
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    assert set(groups) == {"denoiser"} and {id(p) for p in groups["denoiser"]} == trainable
    assert not any(p.requires_grad for p in m.net_ema.parameters())


def test_ema_update_rule():
    m = small_model(ema_decay=0.99)
    p, e = m.net.temporal.embed.weight, m.net_ema.temporal.embed.weight
    with torch.no_grad():
        p.add_(1.0)
    before = e.detach().clone()
    m.on_step(0)  # first update: decay min(0.99, 1/10) = 0.1
    assert torch.allclose(e, 0.1 * before + 0.9 * p)


class CountingNet(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.batches = net, []

    def forward(self, x, c, context=None):
        self.batches.append(x.shape[0])
        return self.net(x, c, context)


@pytest.mark.parametrize("sampler,num_steps", [("heun", 3), ("heun", 20), ("ddpm", 7)])
def test_generate_shapes_chunks_and_evaluations(sampler, num_steps):
    m = small_model()
    counter = CountingNet(m.denoiser.net)
    m.denoiser.net = counter
    out = m.generate(7, sampler=sampler, num_steps=num_steps, chunk_size=3, use_ema=False, seed=0)
    assert out.shape == (7, 8, 3) and torch.isfinite(out).all()
    assert max(counter.batches) == 3  # memory is bounded by the chunk, not by num_samples
    per_chunk = DiMTS.function_evaluations(sampler, num_steps)
    assert len(counter.batches) == 3 * per_chunk  # chunks of 3, 3, 1
    assert sum(counter.batches) == 7 * per_chunk


def test_generate_reproducible_and_prefix():
    torch.manual_seed(0)
    m = small_model()
    for p in m.net_ema.parameters():
        p.data.normal_(0, 0.2)
    m.ema_updates += 1
    a = m.generate(4, seed=3)
    assert torch.equal(a, m.generate(4, seed=3))
    assert torch.equal(m.generate(4, length=5, seed=3), a[:, :5])
    assert not torch.equal(a, m.generate(4, seed=4))
    assert a.abs().max() <= 1.0
    assert m.function_evaluations("heun", 20) <= 40


def test_bad_input():
    m = small_model()
    good = torch.rand(4, 8, 3) * 2 - 1
    bad_inputs = [
        (torch.rand(4, 8, 2), "shape"),
        (torch.rand(4, 7, 3), "shape"),
        (torch.rand(8, 3), "shape"),
        (good.clone().index_put_((torch.tensor(0), torch.tensor(0), torch.tensor(0)), torch.tensor(float("nan"))),
         "NaN"),
        (torch.ones(4, 8, 3, dtype=torch.long), "floating"),
    ]
    for x, match in bad_inputs:
        with pytest.raises(ValueError, match=match):
            m.model(x)
    with pytest.raises(ValueError, match="data_range"):  # a fixed range refuses data outside it
        small_model(data_range=(-1.0, 1.0)).model(good * 3)
    with pytest.raises(ValueError, match="mask"):
        m.model(good, mask=torch.ones(4, 8, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="covariates"):
        m.model(good, covariates=torch.ones(4, 8, 1))
    with pytest.raises(ValueError, match="length"):
        m.generate(2, length=9)
    with pytest.raises(ValueError, match="sampler"):
        m.generate(2, sampler="ddim")
    with pytest.raises(ValueError, match="num_samples"):
        m.generate(0)
    for kwargs, match in ((dict(objective="mse"), "objective"), (dict(ema_decay=1.0), "ema_decay"),
                          (dict(data_range=(1.0, 0.0)), "data_range"), (dict(fourier_norm="l0"), "fourier_norm"),
                          (dict(correlation_weight=-1.0), "correlation_weight"), (dict(sigma_data=0.0), "sigma_data"),
                          (dict(channel_order=[0, 1, 1]), "permutation")):
        with pytest.raises(ValueError, match=match):
            small_model(**kwargs)


# -- covariates --------------------------------------------------------------------------------------------


class ContextSpy(torch.nn.Module):
    """Wraps a network and records the context of every call."""

    def __init__(self, net):
        super().__init__()
        self.net, self.contexts = net, []

    def forward(self, x, c, context=None):
        self.contexts.append(context)
        return self.net(x, c, context)

    def pack_context(self, cond=None):
        return self.net.pack_context(cond)


def covariate_windows(num=6, length=8, obs_dim=3, p=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(num, length, obs_dim, generator=g) * 2 - 1
    u = torch.randn(num, length, p, generator=g) if p else None
    return x, u


def expected_context(u, obs_dim):
    # plane k of the context is covariate k repeated over the channels: context[..., k * C + c] = u[..., k]
    return u.repeat_interleave(obs_dim, dim=-1)


def randomise_zero_parameters(net, scale=0.3, seed=0):
    # The read-outs and adaLN modulations start at zero (output independent of the input): make them random.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * scale)


@pytest.mark.parametrize("p", [0, 2])
@pytest.mark.parametrize("aux_losses", [False, True])
def test_covariate_trace_passes_context_to_every_denoiser_call(p, aux_losses):
    m = small_model(covariate_dim=p, aux_losses=aux_losses)
    assert m.covariate_dim == p and m.net.cond_dim == p and m.net_ema.cond_dim == p
    assert m.net.temporal.embed.in_features == 3 * (1 + p)
    x, u = covariate_windows(p=p)
    spy = ContextSpy(m.denoiser.net)
    m.denoiser.net = spy
    tr = pyro.poutine.trace(m.model).get_trace(x, covariates=u)
    fn = tr.nodes["x"]["fn"]
    assert fn.batch_shape == (6,) and fn.event_shape == (8, 3)
    assert fn.context is None if not p else torch.equal(fn.context, expected_context(u, 3))
    spy.contexts.clear()
    loss = Trace_ELBO().differentiable_loss(m.model, m.guide, x, covariates=u)
    assert torch.isfinite(loss)
    assert len(spy.contexts) == (2 if aux_losses else 1)  # likelihood pass (+ auxiliary pass)
    for context in spy.contexts:
        assert context is None if not p else torch.equal(context, expected_context(u, 3))
    loss.backward()
    assert spy.net.temporal.readout.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("p", [0, 2])
def test_covariate_state_dict_shapes(p):
    m = small_model(covariate_dim=p)
    state = m.state_dict()
    assert state["denoiser.net.temporal.embed.weight"].shape == (8, 3 * (1 + p))
    assert state["denoiser.net.channel.embed.weight"].shape == (8, 8 * (1 + p))
    assert state.keys() == small_model().state_dict().keys()
    if not p:  # without covariates the parameters are those of the unconditional model
        small_model().load_state_dict(state, strict=True)


@pytest.mark.parametrize("p", [0, 2])
@pytest.mark.parametrize("sampler", ["heun", "ddpm"])
def test_fit_then_generate_with_covariates_chunked_ema_context(p, sampler):
    x, u = covariate_windows(num=12, p=p)
    m = small_model(covariate_dim=p, ema_decay=0.9)
    losses = fit(m, x, num_steps=3, batch_size=4, covariates=u, progress=False)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert m.sampling_denoiser() is m.denoiser_ema
    spy = ContextSpy(m.denoiser_ema.net)
    m.denoiser_ema.net = spy
    new_u = None if u is None else torch.randn(7, 8, p)
    out = m.generate(7, sampler=sampler, num_steps=3, chunk_size=3, covariates=new_u, seed=0)
    assert out.shape == (7, 8, 3) and torch.isfinite(out).all()
    assert len(spy.contexts) == 3 * DiMTS.function_evaluations(sampler, 3)
    if p:
        chunks = [expected_context(new_u[s:s + 3], 3) for s in (0, 3, 6)]
        per_chunk = DiMTS.function_evaluations(sampler, 3)
        for i, context in enumerate(spy.contexts):
            assert torch.equal(context, chunks[i // per_chunk])
    else:
        assert all(context is None for context in spy.contexts)
    # a prefix of the windows is still the first steps of the full windows
    assert m.generate(7, length=5, covariates=new_u, seed=1).shape == (7, 5, 3)


@pytest.mark.parametrize("use_ema", [False, True])
def test_covariates_change_generated_windows(use_ema):
    torch.manual_seed(0)
    m = small_model(covariate_dim=2, clip=False)
    if use_ema:
        m.ema_updates += 1
    randomise_zero_parameters(m.net_ema if use_ema else m.net)
    u = torch.randn(5, 8, 2)
    a = m.generate(5, covariates=u, use_ema=use_ema, seed=0)
    assert torch.equal(a, m.generate(5, covariates=u, use_ema=use_ema, seed=0))
    b = m.generate(5, covariates=u + 1.0, use_ema=use_ema, seed=0)
    assert (a - b).abs().max() > 1e-3
    # each window depends on its own covariates only
    c = m.generate(5, covariates=torch.cat([u[:2], u[2:] + 1.0]), use_ema=use_ema, seed=0)
    assert torch.allclose(c[:2], a[:2], atol=1e-6) and torch.allclose(c[2:], b[2:], atol=1e-6)


@pytest.mark.parametrize("bad,match", [
    (torch.randn(4, 8, 3), r"shape \(N, T, p\) = \(4, 8, 2\)"),
    (torch.randn(4, 7, 2), "shape"),
    (torch.randn(3, 8, 2), "shape"),
    (torch.randn(4, 8), "shape"),
    (torch.ones(4, 8, 2, dtype=torch.long), "floating"),
    ([[0.0, 1.0]], "floating"),
    (torch.randn(4, 8, 2).index_put_((torch.tensor(1), torch.tensor(2), torch.tensor(0)), torch.tensor(math.nan)),
     "NaN"),
    (torch.full((4, 8, 2), math.inf), "NaN or infinite"),
    (None, "required"),
])
def test_bad_covariates_raise(bad, match):
    m = small_model(covariate_dim=2)
    x = torch.rand(4, 8, 3) * 2 - 1
    with pytest.raises(ValueError, match=match):
        m.model(x, covariates=bad)
    with pytest.raises(ValueError, match=match):
        m.initialize(x, covariates=bad)
    with pytest.raises(ValueError, match=match):
        m.generate(4, covariates=bad)


def test_covariates_without_covariate_dim_raise():
    m = small_model()
    x = torch.rand(4, 8, 3) * 2 - 1
    with pytest.raises(ValueError, match="covariate_dim=0"):
        m.model(x, covariates=torch.randn(4, 8, 1))
    with pytest.raises(ValueError, match="covariate_dim=0"):
        m.generate(4, covariates=torch.randn(4, 8, 1))
    with pytest.raises(ValueError, match="covariate_dim=0"):
        fit(m, x, num_steps=1, batch_size=4, covariates=torch.randn(4, 8, 1), progress=False)
    for bad in (-1, 1.5, "2", None):
        with pytest.raises(ValueError, match="covariate_dim"):
            small_model(covariate_dim=bad)
    with pytest.raises(ValueError, match="covariate_dim"):
        small_model(cond_dim=2)


def test_learns_to_follow_a_sign_covariate():
    # Windows are +-(0.5 + noise) with the sign given by a covariate: an unconditional model could only match
    # the two modes at random; the conditional one must put each generated window on its covariate's side.
    g = torch.Generator().manual_seed(3)
    N, L, C = 256, 8, 2
    sign = torch.randint(0, 2, (N, 1, 1), generator=g).float() * 2 - 1
    u = sign.expand(N, L, 1).clone()
    x = sign * (0.5 + 0.1 * torch.rand(N, L, C, generator=g))
    m = DiMTS(C, L, num_steps=8, ema_decay=0.9, hidden_dim=16, d_state=2, num_decoder_layers=1, covariate_dim=1,
              channel_branch=False)
    fit(m, x, num_steps=60, batch_size=32, lr=1e-2, covariates=u, progress=False, seed=3)
    wanted = torch.cat([torch.ones(40), -torch.ones(40)])
    out = m.generate(80, covariates=wanted[:, None, None].expand(80, L, 1), seed=0)
    means = out.mean((1, 2))
    assert (means.sign() == wanted).float().mean() >= 0.95
    assert ((means.abs() - 0.55).abs() < 0.2).float().mean() >= 0.9


def test_data_in_the_users_units():
    # The range of each channel is learned from the training windows and kept in the state dict: the model takes
    # and generates data in the user's units.
    torch.manual_seed(0)
    x = torch.rand(64, 8, 3) * torch.tensor([1.0, 50.0, 1000.0]) + torch.tensor([0.0, -20.0, 5000.0])
    m = small_model()
    fit(m, x, num_steps=3, batch_size=16, progress=False)
    assert torch.allclose(m.scaler.low, x.amin((0, 1))) and torch.allclose(m.scaler.high, x.amax((0, 1)))
    g = m.generate(20, seed=0)
    assert (g >= m.scaler.low).all() and (g <= m.scaler.high).all()  # clipped to the training range
    again = small_model()
    again.load_state_dict(m.state_dict())
    assert torch.equal(again.generate(20, seed=0), g)


def test_state_dicts_from_before_the_scaler_load():
    m = small_model(data_range=(0.0, 1.0))
    old = {k: v for k, v in m.state_dict().items() if not k.startswith("scaler.")}
    new = small_model(data_range=(0.0, 1.0))
    new.load_state_dict(old)
    assert new.data_range == (0.0, 1.0) and torch.equal(new.scaler.low, torch.zeros(3))
