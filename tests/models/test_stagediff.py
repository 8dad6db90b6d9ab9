import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyroseq.distributions import DiffusionLikelihood, StagedSequence
from pyroseq.models import StageDiff

NET = dict(patch_size=4, d_model=16, num_heads=2, num_encoder_layers=1, kernel_sizes=(3, 1), fusion_dim=4,
           fusion_kernel_size=3)


def small_model(**kwargs):
    defaults = dict(obs_dim=2, stage_length=8, num_steps=4, **NET)
    defaults.update(kwargs)
    return StageDiff(**defaults)


def phase_windows(num, length, period=16.0, seed=0):
    """Smooth two-channel windows (sin and cos of a random phase) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(num, 1, generator=g) * 2 * math.pi
    t = torch.arange(length).float()
    angle = 2 * math.pi * t / period + phase
    return 0.9 * torch.stack([angle.sin(), angle.cos()], dim=-1)


def spy_on_history_inputs(m):
    """Make ``m.net.encode_history`` record its inputs; returns the list they are appended to."""
    seen = []
    original = m.net.encode_history

    def spy(previous):
        seen.append(previous.clone())
        return original(previous)

    m.net.encode_history = spy
    return seen


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("objective", ["edm", "bound"])
def test_model_trace_shapes_and_site(k, objective):
    m = small_model(objective=objective)
    x = phase_windows(5, 8 * k)
    tr = pyro.poutine.trace(m.model).get_trace(x)
    site = tr.nodes["x"]
    assert site["is_observed"]
    staged = site["fn"]
    assert isinstance(staged, StagedSequence) and staged.num_stages == k
    # The observation site has the data's shape (N, T, C); the stages are a factorisation inside it.
    assert staged.event_shape == (8 * k, 2) and staged.batch_shape == (5,)
    assert torch.equal(site["value"], x)
    lik = staged.stage_fn(staged.history(staged.stages(x)), slice(None))
    assert isinstance(lik, DiffusionLikelihood) and lik.objective == objective
    assert lik.event_shape == (8, 2) and lik.batch_shape == (5, k)
    assert lik.context.shape == (5, k) + m.net.history_shape
    loss = Trace_ELBO().differentiable_loss(m.model, m.guide, x)
    assert torch.isfinite(loss)
    loss.backward()
    unused = {name for name, p in m.net.named_parameters() if p.grad is None}
    # A single stage never encodes a history (it only sees the "no history" tokens).
    history_params = {"history_embed.weight", "history_embed.bias", "history_scale_embed"} | {
        name for name, _ in m.net.named_parameters() if name.startswith("stage_fusion")}
    assert unused == (history_params if k == 1 else set())
    # Every trainable parameter is in the param store (for pyro.optim users).
    assert len(list(pyro.get_param_store().keys())) == len(list(m.net.parameters()))


def test_teacher_forcing_history():
    # Stage 1 sees the "no history" tokens, stage m the encoded *clean* stage m - 1.
    m = small_model()
    x = phase_windows(3, 24)
    tr = pyro.poutine.trace(m.model).get_trace(x)
    staged = tr.nodes["x"]["fn"]
    history = staged.history(staged.stages(x))
    stages = x.reshape(3, 3, 8, 2)
    assert torch.allclose(history[:, 0], m.net.null_history(3))
    for j in (1, 2):
        assert torch.allclose(history[:, j], m.net.encode_history(stages[:, j - 1]), atol=1e-6)


def test_log_prob_is_sum_over_stages_of_the_stage_likelihoods():
    m = small_model(objective="bound", num_noise_draws=2)
    x = phase_windows(4, 16)
    stages = x.reshape(4, 2, 8, 2)
    history = m.stage_history(stages)
    pyro.set_rng_seed(3)
    total = m.likelihood(history).to_event(1).log_prob(stages)
    pyro.set_rng_seed(3)
    per_stage = m.likelihood(history).log_prob(stages)
    assert total.shape == (4,) and per_stage.shape == (4, 2)
    assert torch.allclose(total, per_stage.sum(-1))


@pytest.mark.parametrize("length", [8, 13, 24, 40])
@pytest.mark.parametrize("num_samples,chunk_size", [(1, None), (5, 2)])
def test_generate_shapes_any_length(length, num_samples, chunk_size):
    m = small_model()
    out = m.generate(num_samples, length, chunk_size=chunk_size, seed=0)
    assert out.shape == (num_samples, length, 2)
    assert torch.isfinite(out).all() and out.abs().max() <= 1.0


def test_generate_is_reproducible_and_truncates_consistently():
    m = small_model()
    a = m.generate(3, 24, seed=5)
    assert torch.equal(a, m.generate(3, 24, seed=5))
    # A shorter request generates the same stages and cuts the last one.
    assert torch.equal(m.generate(3, 13, seed=5), a[:, :13])


def test_generation_memory_bounded_by_chunks():
    m = small_model()
    sizes = []
    original = m.net.forward

    def spy(x_in, c_noise, context=None):
        sizes.append(x_in.shape[0])
        return original(x_in, c_noise, context)

    m.net.forward = spy
    m.generate(11, 24, chunk_size=4)
    assert max(sizes) == 4 and sum(sizes) == 11 * 3 * (2 * m.num_steps - 1)


def test_stage_by_stage_generation_conditions_on_generated_stage():
    # Every stage after the first is sampled given encode_history(previous generated stage).
    m = small_model()
    seen = spy_on_history_inputs(m)
    out = m.generate(3, 32, seed=1)
    assert len(seen) == 3
    for j, previous in enumerate(seen):
        assert torch.equal(previous, out[:, 8 * j:8 * (j + 1)])


def test_generated_stage_matches_single_stage_sampler():
    # The second stage is exactly what the Heun sampler of the stage likelihood draws given the history
    # of the first (same noise), i.e. generation chains the per-stage conditionals.
    from pyroseq.diffusion import heun_sample

    m = small_model(clip=None)
    out = m.generate(2, 16, seed=7)
    g = torch.Generator().manual_seed(7)
    kw = dict(num_steps=m.num_steps, sigma_data=m.sigma_data, generator=g)
    with torch.no_grad():
        first = heun_sample(m.denoiser, (2, 8, 2), m.net.null_history(2), **kw)
        second = heun_sample(m.denoiser, (2, 8, 2), m.net.encode_history(first), **kw)
    assert torch.allclose(out, torch.cat([first, second], 1), atol=1e-5)


@pytest.mark.parametrize("churn", [dict(S_churn=40.0, S_min=0.05, S_max=1.0), dict(S_churn=2.0, S_noise=1.01)])
def test_sampler_kwargs_reach_every_stage(churn):
    # Stochastic Heun steps apply to every stage: generation equals chaining the churned single-stage sampler,
    # and differs from the deterministic sampler with the same seed.
    from pyroseq.diffusion import heun_sample

    m = small_model(clip=None, sigma_max=5.0)
    out = m.generate(2, 16, seed=3, **churn)
    g = torch.Generator().manual_seed(3)
    kw = dict(num_steps=m.num_steps, sigma_min=m.sigma_min, sigma_max=m.sigma_max, sigma_data=m.sigma_data,
              generator=g, **churn)
    with torch.no_grad():
        first = heun_sample(m.denoiser, (2, 8, 2), m.net.null_history(2), **kw)
        second = heun_sample(m.denoiser, (2, 8, 2), m.net.encode_history(first), **kw)
    assert torch.allclose(out, torch.cat([first, second], 1), atol=1e-5)
    assert not torch.allclose(out, m.generate(2, 16, seed=3), atol=1e-3)


@pytest.mark.parametrize("num_steps", [None, 7])
def test_ddpm_sampler_chains_single_stage_ddpm(num_steps):
    # sampler="ddpm" draws every stage with the ancestral sampler (500 steps by default), chained on the
    # history of the stage before, exactly like the Heun path.
    from pyroseq.diffusion import ddpm_sample

    m = small_model(clip=None)
    calls = []
    original = m.net.forward

    def spy(x_in, c_noise, context=None):
        calls.append(1)
        return original(x_in, c_noise, context)

    m.net.forward = spy
    out = m.generate(2, 16, seed=4, sampler="ddpm", num_steps=num_steps)
    steps = 500 if num_steps is None else num_steps
    assert len(calls) == 2 * steps
    m.net.forward = original
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        first = ddpm_sample(m.denoiser, (2, 8, 2), m.net.null_history(2), num_steps=steps, generator=g)
        second = ddpm_sample(m.denoiser, (2, 8, 2), m.net.encode_history(first), num_steps=steps, generator=g)
    assert torch.allclose(out, torch.cat([first, second], 1), atol=1e-5)


@pytest.mark.parametrize("sampler,num_steps", [("ddim", None), ("ddim", 10), ("heun", 0), ("ddpm", 2.5)])
def test_generate_bad_sampler_raises(sampler, num_steps):
    with pytest.raises(ValueError, match="sampler" if sampler not in ("heun", "ddpm") else "num_steps"):
        small_model().generate(2, 16, sampler=sampler, num_steps=num_steps)


@pytest.mark.parametrize("w", [0.0, 1.0, 2.5])
def test_history_guidance_mixes_conditional_and_unconditional_denoisers(w):
    # Stage 2 is the Heun sampler of D_null + w (D_history - D_null); w = 1 is plain generation and w = 0
    # samples every stage as a first stage (no dependence on the history).
    from pyroseq.diffusion import heun_sample

    m = small_model(clip=None)
    out = m.generate(3, 16, seed=5, guidance=w)
    g = torch.Generator().manual_seed(5)
    kw = dict(num_steps=m.num_steps, sigma_data=m.sigma_data, generator=g)
    null = m.net.null_history(3)

    def guided(x, sigma, history):
        uncond = m.denoiser(x, sigma, null)
        return uncond + w * (m.denoiser(x, sigma, history) - uncond)

    with torch.no_grad():
        first = heun_sample(m.denoiser, (3, 8, 2), null, **kw)
        second = heun_sample(guided, (3, 8, 2), m.net.encode_history(first), **kw)
    # float32 kernels differ slightly between the guided 2N batch and two N batches; w amplifies it
    assert torch.allclose(out, torch.cat([first, second], 1), atol=1e-4, rtol=1e-4)
    assert not out.requires_grad  # no autograd graph is built while sampling
    if w == 1.0:
        assert torch.equal(out, m.generate(3, 16, seed=5))


def test_history_guidance_with_covariates_and_bad_weights():
    m = small_model(covariate_dim=1)
    u = torch.randn(2, 24, 1)
    assert m.generate(2, 20, covariates=u, guidance=2.0, seed=0).shape == (2, 20, 2)
    for bad in (-1.0, float("nan"), "two", None):
        with pytest.raises(ValueError, match="guidance"):
            small_model().generate(2, 16, guidance=bad)


@pytest.mark.parametrize("bad", [0, -8, 2.5, "16", None])
def test_generate_bad_lengths_raise(bad):
    m = small_model()
    if bad is not None:  # None means one stage
        with pytest.raises(ValueError, match="length"):
            m.generate(2, bad)
    with pytest.raises(ValueError, match="num_samples"):
        m.generate(bad, 8)


@pytest.mark.parametrize("T", [4, 12, 20])
def test_model_bad_window_lengths_raise(T):
    m = small_model()
    with pytest.raises(ValueError, match="multiple of stage_length"):
        m.model(phase_windows(3, T))


def test_model_bad_inputs_raise():
    m = small_model()
    with pytest.raises(ValueError, match="channels"):
        m.model(torch.zeros(3, 16, 3))
    with pytest.raises(ValueError, match="shape"):
        m.model(torch.zeros(16, 2))
    x = phase_windows(3, 16)
    x[0, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        m.model(x)
    with pytest.raises(ValueError, match="mask"):
        m.model(phase_windows(3, 16), mask=torch.ones(3, 16, 2))
    with pytest.raises(ValueError, match="stage_length"):
        small_model(stage_length=10)  # not a multiple of patch_size 4
    with pytest.raises(ValueError, match="objective"):
        small_model(objective="mse")
    with pytest.raises(ValueError, match="obs_dim"):
        small_model(obs_dim=0)


def test_guide_param_groups_and_ema():
    m = small_model(ema_decay=0.5)
    assert m.guide(phase_windows(2, 8)) is None
    groups = m.param_groups()
    assert set(groups) == {"denoiser"}
    assert {id(p) for p in groups["denoiser"]} == {id(p) for p in m.parameters() if p.requires_grad}
    w = m.net.patch_embed.weight
    start = w.detach().clone()
    with torch.no_grad():
        w.add_(1.0)
    m.on_step(0)  # warm-up decay min(0.5, 1/10) = 0.1: EMA moves 90% of the way
    assert torch.allclose(m.net_ema.patch_embed.weight, start + 0.9, atol=1e-6)
    assert m.sampling_denoiser().net is m.net_ema and m.sampling_denoiser(use_ema=False).net is m.net
    assert torch.allclose(m.net.patch_embed.weight, start + 1.0)
    assert "denoiser_ema.net.patch_embed.weight" in m.state_dict()


@pytest.mark.parametrize("layout", ["buffers", "net_ema"])
def test_state_dicts_with_old_layouts_load(layout):
    # The moving average was kept as buffers "ema_<name with . as __>", later as a module "net_ema" beside
    # "net"; both map to the core's "denoiser_ema.net" / "denoiser.net", and a missing scaler keeps its state.
    m = small_model(ema_decay=0.5)
    with torch.no_grad():
        m.net_ema.patch_embed.weight.add_(3.0)
    old = {}
    for key, value in m.state_dict().items():
        if key.startswith("denoiser_ema.net."):
            name = key[len("denoiser_ema.net."):]
            key = "ema_" + name.replace(".", "__") if layout == "buffers" else "net_ema." + name
        elif key.startswith("denoiser.net."):
            old["net." + key[len("denoiser.net."):]] = value
        if not key.startswith("scaler."):
            old[key] = value
    fresh = small_model(ema_decay=0.5)
    fresh.load_state_dict(old)  # strict
    assert torch.equal(fresh.net_ema.patch_embed.weight, m.net_ema.patch_embed.weight)
    assert torch.equal(fresh.net.patch_embed.weight, m.net.patch_embed.weight)


def test_fit_trains_stagediff():
    inference = pytest.importorskip("pyroseq.inference")
    if not hasattr(inference, "fit"):
        pytest.skip("pyroseq.inference.fit not available yet")
    m = small_model()
    losses = inference.fit(m, phase_windows(32, 16), num_steps=3, batch_size=8, seed=0)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)


def train(model, x, steps, lr=3e-3, batch_size=64, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.net.parameters(), lr=lr)
    elbo = Trace_ELBO()
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch_size,))
        loss = elbo.differentiable_loss(model.model, model.guide, x[idx]) / batch_size
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.on_step(step)
    return model


def mmd(a, b, bandwidth=0.5):
    """Squared maximum mean discrepancy with a Gaussian kernel between two sets of windows."""
    a, b = a.reshape(len(a), -1).double(), b.reshape(len(b), -1).double()
    k = lambda u, v: torch.exp(-torch.cdist(u, v).pow(2) / (2 * bandwidth**2))
    return (k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean()).item()


def boundary_gap(model, seed=0, window=4):
    """MMD to real windows of generated windows straddling a stage boundary minus that of windows inside
    a stage (stages of 8 steps in 32-step series)."""
    series = model.generate(256, 32, seed=seed)
    real = phase_windows(256, 32, period=12.0, seed=100 + seed)

    def mean_mmd(offsets):
        return sum(mmd(series[:, o:o + window], real[:, o:o + window]) for o in offsets) / len(offsets)

    return mean_mmd([6, 14, 22]) - mean_mmd([2, 10, 18, 26])


def trained_phase_model(fusion, seed=0):
    torch.manual_seed(seed)
    x = phase_windows(4096, 16, period=12.0, seed=seed)
    return train(small_model(num_steps=10, ema_decay=0.99, fusion=fusion), x, steps=200, seed=seed)


def test_trained_generation_has_undetectable_stage_boundaries():
    # Small-scale version of the benchmark's boundary test: a model trained on 2-stage windows of a smooth
    # oscillation generates 4-stage series whose windows straddling a stage boundary are as close to real
    # windows (kernel two-sample distance) as windows inside a stage.
    assert boundary_gap(trained_phase_model("channels")) <= 0.01


@pytest.mark.slow
def test_boundaries_are_detectable_without_history():
    # The same check fails when no history is handed between stages.
    assert boundary_gap(trained_phase_model("none")) > 0.03


# -- covariates --------------------------------------------------------------------------------------------


def expected_planes(u, channels):
    # plane k of the packed "cond" is covariate k repeated over the channels: cond[..., k * C + c] = u[..., k]
    return u.repeat_interleave(channels, dim=-1)


def spy_contexts(m, net=None):
    contexts = []
    net = m.net if net is None else net
    original = net.forward

    def spy(x_in, c_noise, context=None):
        contexts.append(context)
        return original(x_in, c_noise, context)

    net.forward = spy
    return contexts


@pytest.mark.parametrize("p", [0, 2])
@pytest.mark.parametrize("k", [1, 2])
def test_covariate_trace_cuts_covariates_into_stages(p, k):
    m = small_model(covariate_dim=p)
    assert m.covariate_dim == p and m.net.cond_dim == p
    assert m.net.patch_embed.in_features == 4 * (1 + p)
    x = phase_windows(5, 8 * k)
    u = torch.randn(5, 8 * k, p) if p else None
    tr = pyro.poutine.trace(m.model).get_trace(x, covariates=u)
    staged = tr.nodes["x"]["fn"]
    assert staged.batch_shape == (5,) and staged.event_shape == (8 * k, 2)
    history = m.stage_history(x.reshape(5, k, 8, 2))
    fn = staged.stage_fn(history, slice(None))
    assert fn.batch_shape == (5, k) and fn.event_shape == (8, 2)
    context = fn.context
    if p:
        assert list(context) == ["cond", "history"]
        assert torch.equal(context["cond"], expected_planes(u.reshape(5, k, 8, p), 2))
        assert torch.allclose(context["history"], history)
    else:
        assert torch.allclose(context, history)
    contexts = spy_contexts(m)
    loss = Trace_ELBO().differentiable_loss(m.model, m.guide, x, covariates=u)
    assert torch.isfinite(loss)
    loss.backward()
    assert m.net.patch_embed.weight.grad.abs().sum() > 0
    (context,) = contexts  # one denoiser call on the k * N flattened stages
    if p:
        flat = expected_planes(u.reshape(5 * k, 8, p), 2)
        assert torch.equal(context["cond"], flat) and context["history"].shape == (5 * k,) + m.net.history_shape


@pytest.mark.parametrize("p", [0, 2])
def test_covariate_state_dict(p):
    m = small_model(covariate_dim=p)
    state = m.state_dict()
    assert state["denoiser.net.patch_embed.weight"].shape == (16, 4 * (1 + p))
    assert state["denoiser_ema.net.patch_embed.weight"].shape == (16, 4 * (1 + p))
    assert state.keys() == small_model().state_dict().keys()
    if not p:
        small_model().load_state_dict(state, strict=True)


@pytest.mark.parametrize("p", [0, 2])
@pytest.mark.parametrize("length", [13, 16])
def test_fit_then_generate_with_covariates(p, length):
    inference = pytest.importorskip("pyroseq.inference")
    m = small_model(covariate_dim=p, num_steps=2)
    x = phase_windows(16, 16)
    u = torch.randn(16, 16, p) if p else None
    losses = inference.fit(m, x, num_steps=3, batch_size=8, seed=0, covariates=u, progress=False)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert int(m.ema_updates) == 3
    new_u = torch.randn(5, 16, p) if p else None  # two whole stages, also for length 13
    contexts = spy_contexts(m, m.net_ema)  # generation samples with the moving average
    out = m.generate(5, length, chunk_size=3, covariates=new_u, seed=0)
    assert out.shape == (5, length, 2) and torch.isfinite(out).all()
    per_stage = 2 * m.num_steps - 1
    assert len(contexts) == 2 * 2 * per_stage  # 2 chunks x 2 stages
    if p:
        i = 0
        for start, stop in ((0, 3), (3, 5)):
            for stage in range(2):
                cond = expected_planes(new_u[start:stop, 8 * stage:8 * (stage + 1)], 2)
                for context in contexts[i:i + per_stage]:
                    assert torch.equal(context["cond"], cond)
                    assert context["history"].shape == (stop - start,) + m.net.history_shape
                i += per_stage
    else:
        assert all(torch.is_tensor(c) for c in contexts)


def test_generated_stage_with_covariates_matches_single_stage_sampler():
    # Each stage is the Heun sample given its own covariates and the history of the generated stage before.
    from pyroseq.diffusion import heun_sample

    m = small_model(clip=None, covariate_dim=1)
    u = torch.randn(2, 16, 1)
    out = m.generate(2, 16, covariates=u, seed=7)
    g = torch.Generator().manual_seed(7)
    kw = dict(num_steps=m.num_steps, sigma_data=m.sigma_data, generator=g)
    planes = u[:, :, None, :].expand(-1, -1, 2, -1)
    with torch.no_grad():
        first = heun_sample(m.denoiser, (2, 8, 2), m.net.pack_context(m.net.null_history(2), planes[:, :8]), **kw)
        second = heun_sample(m.denoiser, (2, 8, 2),
                             m.net.pack_context(m.net.encode_history(first), planes[:, 8:]), **kw)
    assert torch.allclose(out, torch.cat([first, second], 1), atol=1e-5)


def test_covariates_change_generation_causally():
    torch.manual_seed(0)
    m = small_model(covariate_dim=2, clip=None)
    u = torch.randn(4, 24, 2)
    a = m.generate(4, 24, covariates=u, seed=0)
    assert torch.equal(a, m.generate(4, 24, covariates=u, seed=0))
    b = m.generate(4, 24, covariates=u + 1.0, seed=0)
    assert (a - b)[:, :8].abs().max() > 1e-3
    # changing the covariates of the last stage leaves the earlier stages unchanged
    later = u.clone()
    later[:, 16:] += 1.0
    c = m.generate(4, 24, covariates=later, seed=0)
    assert torch.allclose(c[:, :16], a[:, :16], atol=1e-6) and (c - a)[:, 16:].abs().max() > 1e-3


@pytest.mark.parametrize("bad,match", [
    (torch.randn(3, 16, 1), r"shape \(N, T, p\) = \(3, 16, 2\)"),
    (torch.randn(3, 8, 2), "shape"),
    (torch.randn(2, 16, 2), "shape"),
    (torch.randn(3, 16), "shape"),
    (torch.ones(3, 16, 2, dtype=torch.long), "floating"),
    (torch.randn(3, 16, 2).index_put_((torch.tensor(0), torch.tensor(9), torch.tensor(1)), torch.tensor(math.nan)),
     "NaN"),
    (None, "required"),
])
def test_bad_covariates_raise(bad, match):
    m = small_model(covariate_dim=2)
    with pytest.raises(ValueError, match=match):
        m.model(phase_windows(3, 16), covariates=bad)
    with pytest.raises(ValueError, match=match):
        m.generate(3, 13, covariates=bad)  # 13 steps are generated as 2 stages: covariates (3, 16, 2)


def test_covariates_without_covariate_dim_and_bad_covariate_dim_raise():
    m = small_model()
    with pytest.raises(ValueError, match="covariate_dim=0"):
        m.model(phase_windows(3, 16), covariates=torch.randn(3, 16, 1))
    with pytest.raises(ValueError, match="covariate_dim=0"):
        m.generate(3, 16, covariates=torch.randn(3, 16, 1))
    with pytest.raises(ValueError, match="covariate_dim=0"):
        m.likelihood(m.net.null_history(3), covariates=torch.randn(3, 8, 1))
    with pytest.raises(ValueError, match="stage_length, p"):
        small_model(covariate_dim=1).likelihood(m.net.null_history(3), covariates=torch.randn(3, 16, 1))
    for bad in (-1, 0.5, "1", None):
        with pytest.raises(ValueError, match="covariate_dim"):
            small_model(covariate_dim=bad)
    with pytest.raises(ValueError, match="covariate_dim"):
        small_model(cond_dim=1)


def test_learns_to_follow_a_sign_covariate_stage_by_stage():
    # Each stage is +-(0.5 + noise) with the sign given by a covariate (independent per stage): trained on
    # 2-stage windows, the model must put every stage of a 3-stage series on its own covariate's side.
    g = torch.Generator().manual_seed(0)

    def signs(num, stages):
        s = torch.randint(0, 2, (num, stages, 1, 1), generator=g).float() * 2 - 1
        return s.expand(num, stages, 8, 1).reshape(num, 8 * stages, 1)

    u = signs(256, 2)
    x = u * (0.5 + 0.1 * torch.rand(256, 16, 2, generator=g))
    m = small_model(num_steps=8, ema_decay=0.9, covariate_dim=1)
    pytest.importorskip("pyroseq.inference").fit(m, x, num_steps=60, batch_size=32, lr=1e-2, covariates=u,
                                                 progress=False, seed=0)
    wanted = signs(80, 3)
    means = m.generate(80, 24, covariates=wanted, seed=0).reshape(80, 3, 8, 2).mean((2, 3))
    assert (means.sign() == wanted[:, ::8, 0]).float().mean() >= 0.95
    assert ((means.abs() - 0.55).abs() < 0.2).float().mean() >= 0.9


# -- history noise (conditioning augmentation) -------------------------------------------------------------

@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_history_noise_in_teacher_forcing(tau):
    # Stage m is conditioned on encode_history(stage m - 1 + tau * eps), eps standard normal.
    m = small_model(history_noise=tau)
    x = phase_windows(64, 16)
    seen = spy_on_history_inputs(m)
    pyro.poutine.trace(m.model).get_trace(x).compute_log_prob()  # the history is encoded when scoring
    eps = (seen[0] - x[:, :8]) / tau
    assert eps.abs().max() > 0
    assert abs(eps.mean().item()) < 0.15 and abs(eps.std().item() - 1) < 0.1


def test_history_noise_zero_is_clean_history():
    m = small_model(history_noise=0.0)
    stage = phase_windows(3, 8)
    assert m.noisy_history(stage) is stage


def test_history_noise_in_generation_chains_noisy_conditionals():
    # With tau > 0 the second stage is Heun's draw given the history of (first stage + tau * eps), where the
    # sampler's generator also draws eps, right after the first stage; output is reproducible by seed.
    from pyroseq.diffusion import heun_sample

    tau = 0.3
    m = small_model(clip=None, history_noise=tau)
    out = m.generate(2, 16, seed=7)
    assert torch.equal(out, m.generate(2, 16, seed=7))
    g = torch.Generator().manual_seed(7)
    kw = dict(num_steps=m.num_steps, sigma_data=m.sigma_data, generator=g)
    with torch.no_grad():
        first = heun_sample(m.denoiser, (2, 8, 2), m.net.null_history(2), **kw)
        noisy = first + tau * torch.randn(first.shape, generator=g)
        second = heun_sample(m.denoiser, (2, 8, 2), m.net.encode_history(noisy), **kw)
    assert torch.allclose(out, torch.cat([first, second], 1), atol=1e-5)
    clean = small_model(clip=None)
    clean.load_state_dict(m.state_dict())
    assert not torch.allclose(clean.generate(2, 16, seed=7)[:, 8:], out[:, 8:], atol=1e-3)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bad_history_noise_raises(bad):
    with pytest.raises(ValueError, match="history_noise"):
        small_model(history_noise=bad)


def test_edm_noise_reaches_the_likelihood():
    m = small_model(objective="edm", edm_noise=(-2.0, 0.5))
    history = m.net.null_history(3)
    assert m.likelihood(history).edm_noise == (-2.0, 0.5)
    assert small_model().likelihood(history).edm_noise == (-0.6, 1.2)  # the Stage-Diff default


@pytest.mark.parametrize("bad", [(-1.2,), (-1.2, -1.0), (float("nan"), 1.0)])
def test_bad_edm_noise_raises(bad):
    with pytest.raises(ValueError, match="edm_noise"):
        small_model(edm_noise=bad)
