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
# # 5. Writing your own model with `DiffusionLikelihood` and `DiffusionTransition`
#
# pyroseq's models are ordinary Pyro code; the diffusion parts are *distributions*. This notebook builds two
# small models from scratch:
#
# 1. a **learned likelihood**: `pyro.sample("x", DiffusionLikelihood(denoiser, event_shape=(2,)), obs=x)` for a
#    2-D distribution no parametric family fits;
# 2. a **learned conditional transition**: an autoregressive model $p(x_t \mid x_{t-1})$ whose noise is
#    bimodal *only in part of the state space*, with `DiffusionTransition`.
#
# Two rules to remember:
#
# - `log_prob` returns minus a variational bound, i.e. a stochastic **lower bound** on $\log p$. Inside a Pyro
#   *model* this keeps `Trace_ELBO` a valid bound. Never use it inside a guide, with HMC/NUTS, or as an exact
#   density for LOO.
# - A **denoiser** is any callable `denoiser(x_noisy, sigma, context) -> x0_hat`; wrap a network that outputs
#   EDM's $F$ in `EDMPrecond` to get one.
#
# Runtime: about 2-3 minutes on one CPU core.

# %%
import os
import time
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm in Jupyter without ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch

# PYROSEQ_SMOKE=1 shrinks everything so that CI can run the notebook in seconds.
SMOKE = os.environ.get("PYROSEQ_SMOKE", "0") not in ("", "0")
torch.set_num_threads(1)
pyro.set_rng_seed(0)
plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3})
print("smoke mode" if SMOKE else "full mode")

from pyro.infer import SVI, Trace_ELBO

from pyroseq.diffusion import EDMPrecond
from pyroseq.distributions import DiffusionLikelihood, DiffusionTransition
from pyroseq.nn import MLPDenoiserNet

STEPS_A, STEPS_B = (10, 10) if SMOKE else (2000, 1500)


# %% [markdown]
# ## Part A: a learned likelihood for a ring
#
# Data: points on a noisy ring of radius 2. The model has one observed site and no latent variables, so the
# guide is empty and SVI simply maximises the bound.

# %%
def ring(n, generator=None):
    angle = 2 * np.pi * torch.rand(n, generator=generator)
    radius = 2 + 0.15 * torch.randn(n, generator=generator)
    return torch.stack([radius * angle.cos(), radius * angle.sin()], -1)

pyro.clear_param_store()
torch.manual_seed(0)
ring_denoiser = EDMPrecond(MLPDenoiserNet(2, hidden=64, num_layers=3), sigma_data=1.5)

def ring_model(x):                                   # x: (N, 2)
    pyro.module("ring_denoiser", ring_denoiser)
    with pyro.plate("points", x.shape[0]):
        pyro.sample("x", DiffusionLikelihood(ring_denoiser, event_shape=(2,), sigma_data=1.5, num_noise_draws=4),
                    obs=x)

def empty_guide(x):
    pass

svi = SVI(ring_model, empty_guide, pyro.optim.ClippedAdam({"lr": 3e-3, "lrd": 0.9995}), Trace_ELBO())
start = time.perf_counter()
losses = [svi.step(ring(256)) / 256 for _ in range(STEPS_A)]
print(f"{STEPS_A} SVI steps in {time.perf_counter() - start:.0f} s; "
      f"final loss {np.mean(losses[-100:]):.3f} nats/point")

# %% [markdown]
# Sampling uses the Heun sampler (`num_steps=20`: 39 denoiser calls). The bound on held-out points is an upper
# bound on the negative log-likelihood (in nats per point).

# %%
with torch.no_grad():
    lik = DiffusionLikelihood(ring_denoiser, event_shape=(2,), sigma_data=1.5, num_noise_draws=16)
    samples = lik.sample((2000,))
    bound = -lik.log_prob(ring(2000, torch.Generator().manual_seed(1))).mean().item()
print(f"held-out bound on -log p: {bound:.3f} nats per point")

truth = ring(2000, torch.Generator().manual_seed(2))
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
axes[0].scatter(*truth.T, s=3, alpha=0.4)
axes[0].set_title("data")
axes[1].scatter(*samples.T, s=3, alpha=0.4, color="tab:orange")
axes[1].set_title("DiffusionLikelihood samples")
for ax in axes[:2]:
    ax.set_aspect("equal")
    ax.set(xlim=(-3.2, 3.2), ylim=(-3.2, 3.2))
axes[2].hist(truth.norm(dim=-1).numpy(), bins=60, density=True, alpha=0.5, label="data")
axes[2].hist(samples.norm(dim=-1).numpy(), bins=60, density=True, alpha=0.5, label="samples")
axes[2].set_title("radius")
axes[2].legend()
fig.tight_layout()


# %% [markdown]
# ## Part B: a learned transition that depends on the state
#
# Process: $x_t = 0.7\, x_{t-1} + 2\, s_t\, \mathbb 1\{|x_{t-1}| < 1.5\} + 0.3\, e_t$ with $s_t = \pm 1$. Near
# zero the next value is bimodal; far from zero it is a single Gaussian. `DiffusionTransition(denoiser,
# history)` is a distribution over $x_t$ with batch shape `history.shape[:-2]`, so **one call scores every
# transition of every series in parallel**: with `history` of shape `(N, T - 1, 1, 1)` (order 1, one channel)
# the batch shape is `(N, T - 1)`. `baseline="persistence"` makes the denoiser model $x_t - x_{t-1}$; the
# history reaches the network as its context (`context_dim=1`).

# %%
def switching_ar(num_series, length, generator=None):
    x = torch.zeros(num_series, length)
    x[:, 0] = 2 * torch.randn(num_series, generator=generator)
    for t in range(1, length):
        prev = x[:, t - 1]
        s = torch.randint(0, 2, (num_series,), generator=generator) * 2 - 1
        x[:, t] = 0.7 * prev + 2 * s * (prev.abs() < 1.5) + 0.3 * torch.randn(num_series, generator=generator)
    return x.unsqueeze(-1)                                                    # (N, T, 1)

pyro.clear_param_store()
torch.manual_seed(0)
ar_denoiser = EDMPrecond(MLPDenoiserNet(1, hidden=64, num_layers=3, context_dim=1), sigma_data=1.0)

def ar_model(x):                                                              # x: (N, T, 1)
    pyro.module("ar_denoiser", ar_denoiser)
    history = x[:, :-1].unsqueeze(-2)                                         # (N, T - 1, 1, 1)
    transition = DiffusionTransition(ar_denoiser, history, baseline="persistence", num_noise_draws=2)
    with pyro.plate("series", x.shape[0]):
        pyro.sample("x_next", transition.to_event(1), obs=x[:, 1:])          # event: the T - 1 steps

def empty_guide(x):
    pass

svi = SVI(ar_model, empty_guide, pyro.optim.ClippedAdam({"lr": 3e-3, "lrd": 0.9995}), Trace_ELBO())
start = time.perf_counter()
losses = [svi.step(switching_ar(32, 33)) / (32 * 32) for _ in range(STEPS_B)]
print(f"{STEPS_B} SVI steps in {time.perf_counter() - start:.0f} s; final loss {np.mean(losses[-100:]):.3f} "
      f"nats per transition")

# %% [markdown]
# The learned conditional density $p(x_t \mid x_{t-1} = c)$ for three states $c$, against samples of the true
# process from the same state:

# %%
states = [0.0, 1.0, 3.0]
gen = torch.Generator().manual_seed(3)
fig, axes = plt.subplots(1, 3, figsize=(14, 3.5), sharey=True)
for ax, c in zip(axes, states):
    history = torch.full((1, 1, 1), c)                                        # batch (1,), order 1, one channel
    with torch.no_grad():
        learned = DiffusionTransition(ar_denoiser, history, baseline="persistence").sample((4000,)).flatten()
    s = torch.randint(0, 2, (4000,), generator=gen) * 2 - 1
    true = 0.7 * c + 2 * s * (abs(c) < 1.5) + 0.3 * torch.randn(4000, generator=gen)
    bins = np.linspace(0.7 * c - 4, 0.7 * c + 4, 80)
    ax.hist(true.numpy(), bins=bins, density=True, alpha=0.5, label="true")
    ax.hist(learned.numpy(), bins=bins, density=True, alpha=0.5, label="DiffusionTransition")
    ax.set_title(f"p(x[t] | x[t-1] = {c})")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# Sampling a transition repeatedly rolls the model forward, here from $x_0 = 0$ for 40 steps (200 paths):

# %%
paths = [torch.zeros(200, 1)]
with torch.no_grad():
    for _ in range(40):
        history = paths[-1].unsqueeze(-2)                                     # (200, 1, 1)
        paths.append(DiffusionTransition(ar_denoiser, history, baseline="persistence").sample())
paths = torch.stack(paths, 1)[..., 0]                                         # (200, 41)
true_paths = switching_ar(200, 41, torch.Generator().manual_seed(4))[..., 0]
true_paths[:, 0] = 0
fig, axes = plt.subplots(1, 2, figsize=(14, 3.5), sharey=True)
for ax, p, title in ((axes[0], true_paths, "true process"), (axes[1], paths, "learned model")):
    ax.plot(p[:30].T.numpy(), lw=0.6, alpha=0.6)
    ax.set_title(title)
    ax.set_xlabel("t")
fig.tight_layout()

# %% [markdown]
# ## Where to go from here
#
# - Put `DiffusionTransition` on a *latent* state with a guide, and you have a DDSSM: see
#   `pyroseq/models/ddssm.py` (about 100 lines on top of the shared deep state-space body), or subclass
#   `pyroseq.models.DeepStateSpaceModel` and implement `transition_distribution`.
# - Notebook 07 writes such a latent model from scratch: a 1-D latent trajectory as one `LatentMarkovSequence`
#   site, with a discrete regime per series that `TraceEnum_ELBO` sums out.
# - For whole windows use `DiffusionLikelihood(denoiser, event_shape=(L, C))` with a sequence denoiser
#   (`pyroseq.nn.DiMTSNet`, `pyroseq.nn.CSDIDenoiserNet`); `pyroseq.models.DiMTS` is exactly that.
# - `pyroseq.inference.fit` trains any object with `model`/`guide` methods (KL warm-up, per-group learning
#   rates, checkpoints); `pyroseq.diffusion.probability_flow_log_prob` gives a deterministic likelihood for
#   evaluation.
