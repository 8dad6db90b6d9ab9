# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. A custom latent model: a diffusion transition with a switching regime
#
# Notebook 05 put `DiffusionTransition` on an *observed* series. Here it becomes the transition of a *latent*
# state-space model, written from scratch, with a discrete regime per series that Pyro sums out exactly:
#
# $$k_n \sim \mathrm{Categorical}(\pi),\qquad z_{n,1} \sim \mathcal N(0, 1),\qquad
# z_{n,t} \sim p_\psi(z_{n,t} \mid z_{n,t-1}, k_n),\qquad x_{n,t} \sim \mathcal N(z_{n,t}, \sigma^2).$$
#
# - The latent state $z$ is **1-D**: `DiffusionTransition(..., event_dim=0)` has `event_shape ()` and
#   `LatentMarkovSequence(..., event_dim=1)` is the prior of a whole trajectory $z_{n,1:T}$ as **one** sample
#   site of event shape `(T,)`, scored with one batched denoiser call.
# - The regime $k_n$ enters the transition as a one-hot **covariate**. It is marked
#   `infer={"enumerate": "parallel"}`, so `TraceEnum_ELBO` evaluates the model under both regimes at once (the
#   covariates get shape `(K, 1, T, K)`, the distributions batch shape `(K, N)`) and sums them out: no guide for
#   $k$, no score-function gradients.
# - The guide is a local mean-field Gaussian over $z$, one mean and scale per series and step.
#
# We train it with plain Pyro (`SVI` + `TraceEnum_ELBO`) and with `pyroseq.inference.fit`, recover each
# series' regime, and check the fit with `Predictive` and ArviZ.
#
# Runtime: about 5 minutes on one CPU core.

# %%
import itertools
import math
import os
import time
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm in Jupyter without ipywidgets
import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceEnum_ELBO, infer_discrete
from torch import nn

from pyroseq.diffusion import EDMPrecond
from pyroseq.distributions import DiffusionTransition
from pyroseq.inference import fit
from pyroseq.models import LatentMarkovSequence, SequenceModel
from pyroseq.models.base import series_plate
from pyroseq.nn import TransitionDenoiserNet

# PYROSEQ_SMOKE=1 shrinks everything so that CI can run the notebook in seconds.
SMOKE = os.environ.get("PYROSEQ_SMOKE", "0") not in ("", "0")
torch.set_num_threads(1)
pyro.set_rng_seed(0)
plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3})
print("smoke mode" if SMOKE else "full mode")

N, T = (16, 8) if SMOKE else (200, 25)          # series, time steps
SVI_STEPS, FIT_STEPS = (4, 4) if SMOKE else (500, 500)
NUM_SAMPLES = 4 if SMOKE else 50                # posterior predictive replicates


# %% [markdown]
# ## Data: two regimes of dynamics
#
# Every series follows one of two latent AR(1) processes, observed with noise $0.3$:
#
# | regime | share | dynamics |
# |---|---|---|
# | 0 | 40% | $z_t = 0.9\, z_{t-1} + 0.3\, \varepsilon_t$ (persistent) |
# | 1 | 60% | $z_t = -0.6\, z_{t-1} + 0.5\, \varepsilon_t$ (oscillating) |
#
# The two regimes have similar ranges; what tells them apart is the dynamics, e.g. the lag-1 autocorrelation.

# %%
PHI, NOISE, SHARES, OBS_NOISE = torch.tensor([0.9, -0.6]), torch.tensor([0.3, 0.5]), torch.tensor([0.4, 0.6]), 0.3
K = len(PHI)


def simulate(num_series, length, generator):
    """Returns x (N, T, 1), the latent paths z (N, T) and the regimes k (N,)."""
    k = torch.multinomial(SHARES, num_series, replacement=True, generator=generator)
    z = torch.zeros(num_series, length)
    z[:, 0] = torch.randn(num_series, generator=generator)
    for t in range(1, length):
        z[:, t] = PHI[k] * z[:, t - 1] + NOISE[k] * torch.randn(num_series, generator=generator)
    x = z + OBS_NOISE * torch.randn(num_series, length, generator=generator)
    return x.unsqueeze(-1), z, k


def lag1_autocorrelation(x):
    """Per series, of an (..., T) array."""
    x = x - x.mean(-1, keepdims=True)
    return (x[..., 1:] * x[..., :-1]).sum(-1) / (x * x).sum(-1)


x, z_true, k_true = simulate(N, T, torch.Generator().manual_seed(0))
print(f"x: {tuple(x.shape)}; regime shares {np.bincount(k_true.numpy(), minlength=K) / N}")

fig, axes = plt.subplots(1, 3, figsize=(15, 3.5))
for k, ax in enumerate(axes[:2]):
    ax.plot(x[k_true == k][:6, :, 0].T.numpy(), lw=0.8)
    ax.set(title=f"regime {k}: six series x", xlabel="t")
ac = lag1_autocorrelation(x[..., 0])
for k in range(K):
    axes[2].hist(ac[k_true == k].numpy(), bins=np.linspace(-1, 1, 41), alpha=0.6, label=f"regime {k}")
axes[2].set(title="lag-1 autocorrelation of x per series")
axes[2].legend()
fig.tight_layout()


# %% [markdown]
# **A yardstick.** With the true parameters the model is a mixture of two linear-Gaussian state-space models,
# so a Kalman filter gives the exact marginal likelihood $p(x_n \mid k)$ of every series and the Bayes-optimal
# regime classifier. A learned model can at best match these numbers.

# %%
def kalman_log_likelihood(x, phi, q, r):
    """log p(x) of z_1 ~ N(0, 1), z_t = phi z_{t-1} + q e_t, x_t = z_t + r e'_t; x: (N, T)."""
    m, P, ll = torch.zeros(x.shape[0]), torch.ones(x.shape[0]), torch.zeros(x.shape[0])
    for t in range(x.shape[1]):
        if t:
            m, P = phi * m, phi ** 2 * P + q ** 2
        S = P + r ** 2
        ll += -0.5 * (math.log(2 * math.pi) + S.log() + (x[:, t] - m) ** 2 / S)
        m, P = m + P / S * (x[:, t] - m), P - P ** 2 / S
    return ll


oracle = torch.stack([SHARES[k].log() + kalman_log_likelihood(x[..., 0], PHI[k], NOISE[k], OBS_NOISE)
                      for k in range(K)], -1)                                             # (N, K)
ORACLE_NLL = -oracle.logsumexp(-1).mean().item()
ORACLE_ACCURACY = (oracle.argmax(-1) == k_true).float().mean().item()
print(f"true model: -log p(x) = {ORACLE_NLL:.2f} nats per series; regime accuracy {ORACLE_ACCURACY:.1%}")


# %% [markdown]
# ## The model
#
# One `PyroModule` holds the model, the guide and their parameters, following pyroseq's model protocol
# (`SequenceModel`): `model(x, mask=None, covariates=None)` and `guide(...)` with `x` of shape `(N, T, 1)` and
# the observation site named `"x"`, so `fit`, `Predictive` and the ArviZ helpers all take it. The optional
# `index` / `num_series` arguments let `fit` train on minibatches: the plate then subsamples the series and the
# guide picks their rows of its per-series parameters.
#
# - **Transition.** `TransitionDenoiserNet` (wrapped by `EDMPrecond`) sees the previous state and the
#   covariates. `RegimeFeatures` hands it the one-hot regime and its product with the previous state, so a
#   regime-specific linear dynamic is one layer away; without them the network has to discover that interaction
#   before the two regimes can differ, which takes much longer.
# - **Regime.** `pyro.sample("regime", Categorical(logits=...), infer={"enumerate": "parallel"})` inside the
#   plate. Under `TraceEnum_ELBO(max_plate_nesting=1)` its value is `tensor([[0], [1]])` (shape `(K, 1)`), and
#   every shape downstream is written with `...` so that the same code runs enumerated, vectorised
#   (`Predictive(parallel=True)`) or plain.
# - **Marginalisation switch.** `marginalise="enumerate"` is the version for `TraceEnum_ELBO`;
#   `marginalise="mixture"` writes the same sum over regimes by hand (see the `fit` section).

# %%
class RegimeFeatures(nn.Module):
    """Denoiser network for a scalar state whose context is (history (M, 1, 1), one-hot regime (M, K))."""

    def __init__(self, num_regimes, hidden):
        super().__init__()
        self.net = TransitionDenoiserNet(1, order=1, covariate_dim=2 * num_regimes, hidden_dim=hidden, num_blocks=2)

    def forward(self, x_in, c_noise, context):
        history, regime = context
        return self.net(x_in, c_noise, (history, torch.cat([regime, regime * history[:, -1]], -1)))


class SwitchingLatentModel(SequenceModel):
    latent_sites = ("z",)

    def __init__(self, num_series, length, num_regimes=2, hidden=32, num_noise_draws=2, marginalise="enumerate"):
        super().__init__()
        self.num_regimes, self.num_noise_draws, self.marginalise = num_regimes, num_noise_draws, marginalise
        self.denoiser = EDMPrecond(RegimeFeatures(num_regimes, hidden), sigma_data=1.0)
        self.regime_logits = nn.Parameter(torch.zeros(num_regimes))
        self.obs_log_scale = nn.Parameter(torch.tensor(-1.0))
        # the local guide: a mean and a log-scale per series and time step
        self.z_loc = nn.Parameter(torch.zeros(num_series, length))
        self.z_log_scale = nn.Parameter(torch.full((num_series, length), -2.0))

    def initialize(self, x, mask=None, covariates=None):
        """Start the guide at the observations (fit calls this once before training)."""
        with torch.no_grad():
            self.z_loc.copy_(x[..., 0])

    def transition(self, history, covariates):
        # history: batch + (1,) (order 1, scalar state); covariates: batch + (K,), the one-hot regime
        return DiffusionTransition(self.denoiser, history, covariates, event_dim=0,
                                   num_noise_draws=self.num_noise_draws)

    def latent_prior(self, regime, length):
        """p(z_{1:T} | regime) for a long tensor of regimes of any shape: batch shape regime.shape."""
        onehot = nn.functional.one_hot(regime, self.num_regimes).to(self.z_loc.dtype)
        covariates = onehot.unsqueeze(-2).expand(onehot.shape[:-1] + (length, self.num_regimes))
        initial = dist.Normal(self.z_loc.new_zeros(regime.shape + (1,)), 1.0).to_event(1)
        return LatentMarkovSequence(self.transition, length, order=1, initial=initial, covariates=covariates,
                                    event_dim=1)

    def model(self, x, mask=None, covariates=None, index=None, num_series=None):
        self.register_params()
        N, T, _ = x.shape
        with series_plate("series", N, index, num_series):
            if self.marginalise == "enumerate":
                k = pyro.sample("regime", dist.Categorical(logits=self.regime_logits),
                                infer={"enumerate": "parallel"})
                prior = self.latent_prior(k, T)
            else:  # the same sum over regimes, by hand: a mixture whose components have batch shape (N, K)
                regimes = torch.arange(self.num_regimes).expand(N, self.num_regimes)
                prior = dist.MixtureSameFamily(dist.Categorical(logits=self.regime_logits),
                                               self.latent_prior(regimes, T))
            z = pyro.sample("z", prior)                                                       # (..., N, T)
            pyro.sample("x", dist.Normal(z.unsqueeze(-1), self.obs_log_scale.exp()).to_event(2), obs=x)

    def guide(self, x, mask=None, covariates=None, index=None, num_series=None):
        self.register_params()
        rows = torch.arange(x.shape[0]) if index is None else index
        with series_plate("series", x.shape[0], index, num_series):
            pyro.sample("z", dist.Normal(self.z_loc[rows], self.z_log_scale[rows].exp()).to_event(1))


# %% [markdown]
# A look at the shapes under enumeration: the regime site holds both values, and the latent prior, evaluated
# under both, has batch shape `(K, N)`.

# %%
pyro.clear_param_store()
torch.manual_seed(0)
m = SwitchingLatentModel(N, T)
m.initialize(x)
guide_trace = poutine.trace(m.guide).get_trace(x)
enumerated = poutine.trace(poutine.enum(poutine.replay(m.model, trace=guide_trace), first_available_dim=-2))
trace = enumerated.get_trace(x)
for name in ("regime", "z", "x"):
    site = trace.nodes[name]
    print(f"{name:7s} value {tuple(site['value'].shape)}, batch shape {tuple(site['fn'].batch_shape)}, "
          f"event shape {tuple(site['fn'].event_shape)}")


# %% [markdown]
# ## Training with plain Pyro: `SVI` + `TraceEnum_ELBO`
#
# Nothing pyroseq-specific: the model registers its parameters with Pyro (`register_params`), so
# `pyro.optim.Adam` trains the denoiser, the regime weights, the noise scale and the guide. The loss, divided by
# $N$, is in nats per series; the true model's $-\log p(x)$ above is the floor it approaches.
#
# One caveat: the diffusion `log_prob` is an unbiased Monte Carlo estimate, from `num_noise_draws` noise draws, of
# a lower bound on $\log p(z_t \mid z_{t-1}, k)$. Summed over the regimes inside a log-sum-exp, its noise no
# longer averages out: by Jensen's inequality the enumerated loss is biased *downwards*, the more so the fewer
# the noise draws. The training loss (2 draws per transition) is therefore optimistic; we evaluate with 64.

# %%
def regime_posterior(m, x, num_draws=8, num_noise_draws=16):
    """p(k | x) per series, (N, K): TraceEnum_ELBO's exact enumerated marginal given a guide draw of z,
    averaged over guide draws (with more noise draws per transition than in training)."""
    elbo, draws = TraceEnum_ELBO(max_plate_nesting=1), m.num_noise_draws
    m.num_noise_draws = num_noise_draws
    try:
        with torch.no_grad():
            return sum(elbo.compute_marginals(m.model, m.guide, x)["regime"].probs
                       for _ in range(num_draws)) / num_draws
    finally:
        m.num_noise_draws = draws


def evaluate_loss(m, x, num_draws=4, num_noise_draws=64):
    """The enumerated loss in nats per series with many noise draws (small bias), averaged over guide draws."""
    elbo, draws = TraceEnum_ELBO(max_plate_nesting=1), m.num_noise_draws
    m.num_noise_draws = num_noise_draws
    try:
        with torch.no_grad():
            return np.mean([elbo.loss(m.model, m.guide, x) / x.shape[0] for _ in range(num_draws)])
    finally:
        m.num_noise_draws = draws


def aligned_accuracy(pred, truth):
    """Regime labels are learned, so they are identified only up to a permutation: the best one."""
    return max((torch.tensor(p)[pred] == truth).float().mean().item() for p in itertools.permutations(range(K)))


pyro.clear_param_store()
pyro.set_rng_seed(0)
svi_model = SwitchingLatentModel(N, T)
svi_model.initialize(x)
svi = SVI(svi_model.model, svi_model.guide, pyro.optim.ClippedAdam({"lr": 1e-2, "lrd": 0.9995}),
          TraceEnum_ELBO(max_plate_nesting=1))
start = time.perf_counter()
svi_losses = [svi.step(x) / N for _ in range(SVI_STEPS)]
svi_seconds = time.perf_counter() - start
svi_probs = regime_posterior(svi_model, x)
svi_accuracy = aligned_accuracy(svi_probs.argmax(-1), k_true)
svi_eval = evaluate_loss(svi_model, x)
print(f"{SVI_STEPS} SVI steps in {svi_seconds:.0f} s; loss over the last 50 steps {np.mean(svi_losses[-50:]):.2f}, "
      f"with 64 noise draws {svi_eval:.2f} nats per series (true model {ORACLE_NLL:.2f})")
print(f"regime accuracy {svi_accuracy:.1%} (true model {ORACLE_ACCURACY:.1%}); observation noise "
      f"{svi_model.obs_log_scale.exp().item():.2f} (true {OBS_NOISE})")


# %% [markdown]
# `TraceEnum_ELBO.compute_marginals` (used above) gives the posterior probabilities of the enumerated site;
# `infer_discrete` *samples* it (or, with `temperature=0`, takes the most probable value), here given one draw of
# $z$ from the guide. Condition the model on that draw (`poutine.condition`) rather than `poutine.replay` it:
# `infer_discrete` applies its enumeration outside the replay, and a replayed site that depends on the
# enumerated regime (here `z`) then loses the regime's dimension (a `KeyError` while packing tensors at site
# `'z'`).

# %%
z_draw = poutine.trace(svi_model.guide).get_trace(x).nodes["z"]["value"]
map_model = infer_discrete(poutine.condition(svi_model.model, data={"z": z_draw}), first_available_dim=-2,
                           temperature=0)
svi_model.num_noise_draws = 16
with torch.no_grad():
    k_map = poutine.trace(map_model).get_trace(x).nodes["regime"]["value"]
svi_model.num_noise_draws = 2
print(f"infer_discrete, temperature 0: regimes {tuple(k_map.shape)}, accuracy {aligned_accuracy(k_map, k_true):.1%}")


# %% [markdown]
# ## Training with `pyroseq.inference.fit`
#
# `fit` trains any object with `model` / `guide` methods, with minibatches, per-group learning rates, KL
# schedules, checkpoints and the rest, and optimises the Pyro ELBO it is given: with
# `elbo=TraceEnum_ELBO(max_plate_nesting=1)` it sums the regime out exactly, as the SVI loop above does. (Under
# the default `Trace_ELBO` the regime site would be *sampled* from its prior at every step: a looser bound, and a
# regime that never learns from the data.)
#
# What enumeration computes is the mixture over regimes,
#
# $$p(z_n) = \sum_k \pi_k\, p(z_n \mid k) = \texttt{MixtureSameFamily}(\pi,\ \texttt{LatentMarkovSequence with
# batch shape } (N, K)),$$
#
# which `SwitchingLatentModel(..., marginalise="mixture")` writes by hand. For the same draw of $z$ from the guide
# (same seed), the two losses agree up to the noise of the diffusion bound, here made small with 64 noise draws
# per transition:

# %%
mixture_model = SwitchingLatentModel(N, T, num_noise_draws=64, marginalise="mixture")
mixture_model.load_state_dict(svi_model.state_dict())
svi_model.num_noise_draws = 64
with torch.no_grad():
    pyro.set_rng_seed(1)
    enum_loss = TraceEnum_ELBO(max_plate_nesting=1).loss(svi_model.model, svi_model.guide, x) / N
    pyro.set_rng_seed(1)
    mixture_loss = Trace_ELBO().loss(mixture_model.model, mixture_model.guide, x) / N
svi_model.num_noise_draws = 2
print(f"TraceEnum_ELBO, enumerated regime: {enum_loss:.3f}; Trace_ELBO, mixture: {mixture_loss:.3f} nats per series")


# %% [markdown]
# Now `fit` with `TraceEnum_ELBO` on a fresh enumerated model, on minibatches of half the series. The model's
# methods take `index` and `num_series`, so `fit` passes each batch's positions and the guide trains the rows of
# that batch.

# %%
pyro.clear_param_store()
torch.manual_seed(0)
fit_model = SwitchingLatentModel(N, T)
start = time.perf_counter()
fit_losses = fit(fit_model, x, num_steps=FIT_STEPS, batch_size=max(N // 2, 1), lr=1e-2, lr_decay=0.2,
                 elbo=TraceEnum_ELBO(max_plate_nesting=1), progress=False)
fit_seconds = time.perf_counter() - start
fit_probs = regime_posterior(fit_model, x)
fit_accuracy = aligned_accuracy(fit_probs.argmax(-1), k_true)
fit_eval = evaluate_loss(fit_model, x)
print(f"fit: {FIT_STEPS} steps of {max(N // 2, 1)} series in {fit_seconds:.0f} s; loss over the last 50 steps "
      f"{np.mean(fit_losses[-50:]):.2f}, with 64 noise draws {fit_eval:.2f} nats per series")
print(f"regime accuracy {fit_accuracy:.1%}; observation noise {fit_model.obs_log_scale.exp().item():.2f}")

fig, axes = plt.subplots(1, 2, figsize=(14, 3.5))
for losses, label in ((svi_losses, "SVI + TraceEnum_ELBO"), (fit_losses, "fit + TraceEnum_ELBO")):
    smooth = np.convolve(losses, np.ones(20) / 20, mode="valid") if len(losses) >= 20 else losses
    axes[0].plot(smooth, label=label)
axes[0].axhline(ORACLE_NLL, color="k", ls="--", lw=1, label="true model, -log p(x)")
axes[0].axhline(svi_eval, color="C0", ls=":", lw=1.5, label="SVI, evaluated with 64 noise draws")
axes[0].axhline(fit_eval, color="C1", ls=":", lw=1.5, label="fit, evaluated with 64 noise draws")
axes[0].set(xlabel="step", ylabel="nats per series", title="loss (running mean of 20 steps)",
            ylim=(ORACLE_NLL - 2, ORACLE_NLL + 15))
axes[0].legend(fontsize=8)
for probs, label in ((svi_probs, "SVI"), (fit_probs, "fit")):
    # the probability each series' true regime gets, after aligning the labels
    perm = max(itertools.permutations(range(K)),
               key=lambda p: (torch.tensor(p)[probs.argmax(-1)] == k_true).float().mean().item())
    inverse = torch.argsort(torch.tensor(perm))
    p_true = probs[:, inverse][torch.arange(N), k_true]
    axes[1].hist(p_true.numpy(), bins=np.linspace(0, 1, 21), alpha=0.6, label=label)
axes[1].set(xlabel="posterior probability of the true regime", ylabel="series", title="regime posterior")
axes[1].legend()
fig.tight_layout()


# %% [markdown]
# ## Checks with `Predictive` and ArviZ
#
# **Posterior predictive.** `poutine.uncondition` turns the observation site into a sampled one, so
# `Predictive` with the guide draws replicates $x^{\text{rep}}$ of the data, in the data's shape. The regime is
# not in the guide, so `Predictive` draws it from its prior; that is harmless here because $x$ depends on $k$
# only through $z$, which comes from the guide.
#
# **Prior predictive.** Without the guide, `Predictive` samples the regime from the learned shares and whole
# trajectories from the learned diffusion transition (`LatentMarkovSequence.sample` rolls it forward). This
# checks the dynamics themselves: the lag-1 autocorrelations of simulated series should form the two modes of
# the data, with the right weights.

# %%
predictive_model = poutine.uncondition(svi_model.model)
with torch.no_grad():
    posterior_pred = Predictive(predictive_model, guide=svi_model.guide, num_samples=NUM_SAMPLES, parallel=True,
                                return_sites=["x"])(x)["x"]
    prior_pred = Predictive(predictive_model, num_samples=max(NUM_SAMPLES // 10, 1), parallel=True,
                            return_sites=["x"])(x)["x"]
print(f"posterior predictive x: {tuple(posterior_pred.shape)}; prior predictive x: {tuple(prior_pred.shape)}")

idata = az.from_dict(
    posterior_predictive={"x": posterior_pred[None, ..., 0].numpy()},       # (chain, draw, series, time)
    prior_predictive={"x": prior_pred[None, ..., 0].numpy()},
    observed_data={"x": x[..., 0].numpy()},
    dims={"x": ["series", "time"]},
)
print(idata)

fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
az.plot_ppc(idata, group="posterior", num_pp_samples=min(NUM_SAMPLES, 20), ax=axes[0])
axes[0].set_title("posterior predictive: x")
az.plot_ppc(idata, group="prior", num_pp_samples=prior_pred.shape[0], ax=axes[1])
axes[1].set_title("prior predictive (learned dynamics): x")
bins = np.linspace(-1, 1, 41)
axes[2].hist(lag1_autocorrelation(x[..., 0]).numpy(), bins=bins, density=True, alpha=0.5, label="data")
axes[2].hist(lag1_autocorrelation(prior_pred[..., 0]).flatten().numpy(), bins=bins, density=True, alpha=0.5,
             label="prior predictive")
axes[2].set_title("lag-1 autocorrelation per series")
axes[2].legend()
fig.tight_layout()

# %% [markdown]
# The learned transition density $p_\psi(z_t \mid z_{t-1} = c, k)$ for each (aligned) learned regime, against
# the true one:

# %%
perm = max(itertools.permutations(range(K)),
           key=lambda p: (torch.tensor(p)[svi_probs.argmax(-1)] == k_true).float().mean().item())
fig, axes = plt.subplots(1, 3, figsize=(15, 3.5), sharey=True)
grid = torch.linspace(-3, 3, 200)
for ax, c in zip(axes, (-1.5, 0.0, 1.5)):
    for true_k in range(K):
        learned_k = perm.index(true_k)
        history = torch.full((4000, 1), c)
        regime = nn.functional.one_hot(torch.full((4000,), learned_k), K).float()
        with torch.no_grad():
            draws = svi_model.transition(history, regime).sample()
        ax.hist(draws.numpy(), bins=np.linspace(-3, 3, 61), density=True, alpha=0.4, color=f"C{true_k}",
                label=f"learned, regime {true_k}")
        true_density = dist.Normal(PHI[true_k] * c, NOISE[true_k]).log_prob(grid).exp()
        ax.plot(grid.numpy(), true_density.numpy(), lw=1.5, color=f"C{true_k}", label=f"true, regime {true_k}")
    ax.set_title(f"p(z[t] | z[t-1] = {c}, k)")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# The learned transitions sit close to the true ones, somewhat wider (regime 0) or pulled towards zero (regime 1),
# and the learned observation noise is below the true $0.3$ (see the table below): the model attributes part of
# the observation noise to the latent dynamics, a trade-off that 25 noisy steps per series pin down only loosely.
#
# ## The numbers

# %%
def shares(m):
    """Learned regime shares, in the order of the true regimes."""
    probs = regime_posterior(m, x, num_draws=1)
    perm = max(itertools.permutations(range(K)),
               key=lambda p: (torch.tensor(p)[probs.argmax(-1)] == k_true).float().mean().item())
    return m.regime_logits.softmax(-1).detach()[torch.tensor(perm)].numpy().round(2)


print(f"{'':24s} {'train loss':>10s} {'eval loss':>10s} {'accuracy':>9s} {'shares':>12s} {'obs noise':>9s}")
print(f"{'true model':24s} {'':>10s} {ORACLE_NLL:10.2f} {ORACLE_ACCURACY:9.1%} {str(SHARES.numpy()):>12s} "
      f"{OBS_NOISE:9.2f}")
for label, m, losses, ev, acc in (("SVI + TraceEnum_ELBO", svi_model, svi_losses, svi_eval, svi_accuracy),
                                  ("fit + TraceEnum_ELBO", fit_model, fit_losses, fit_eval, fit_accuracy)):
    print(f"{label:24s} {np.mean(losses[-50:]):10.2f} {ev:10.2f} {acc:9.1%} {str(shares(m)):>12s} "
          f"{m.obs_log_scale.exp().item():9.2f}")
print("(losses in nats per series: training with 2 noise draws over the last 50 steps, evaluation with 64)")

# %% [markdown]
# ## Summary
#
# - `LatentMarkovSequence(transition_fn, T, order, initial=..., covariates=..., event_dim=1)` with a
#   `DiffusionTransition(..., event_dim=0)` is the prior of a 1-D latent trajectory as one site; its batch shape
#   broadcasts with the covariates, so a discrete regime in the covariates is enumerated like any Pyro variable.
# - Plain `SVI` with `TraceEnum_ELBO(max_plate_nesting=1)` sums the regime out exactly;
#   `TraceEnum_ELBO.compute_marginals` and `infer_discrete` recover it per series.
# - `pyroseq.inference.fit(..., elbo=TraceEnum_ELBO(max_plate_nesting=1))` trains the same enumerated model
#   with minibatches and the rest of `fit`'s machinery; the enumerated sum equals the mixture over regimes
#   written by hand (`MixtureSameFamily` over a batch of regimes).
# - Enumerating over a stochastic bound biases the loss downwards (Jensen's inequality inside the log-sum-exp);
#   report losses evaluated with many noise draws, not the training loss.
# - `Predictive(poutine.uncondition(model), guide=guide, parallel=True)` gives posterior predictive replicates,
#   without the guide prior predictive ones; `az.from_dict` + `az.plot_ppc` plot them.
