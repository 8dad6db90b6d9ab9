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
# # 1. Quickstart: a diffusion transition in a deep state-space model
#
# A **DDSSM** (diffusion-driven state-space model) is a deep Kalman filter whose latent transition
# $p(z_t \mid z_{t-1})$ is a conditional diffusion model (`pyroseq.distributions.DiffusionTransition`) instead of a
# Gaussian. This notebook trains a DDSSM and the Gaussian baseline (**DKF**) on a process whose transition is
# *bimodal*, and compares
#
# 1. probabilistic forecasts (fan charts, CRPS, energy score, one-step JSD),
# 2. the inferred latent paths against the true ones,
# 3. the learned transition density against the true one.
#
# Runtime: about 3-4 minutes on one CPU core (`PYROSEQ_SMOKE=1`: seconds, with meaningless numbers).

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

from pyroseq.data import bimodal, bimodal_centred_density
from pyroseq.inference import fit, forecast, plot_forecast, plot_predictive_histogram, to_inference_data
from pyroseq.metrics import crps, energy_score, jsd_histogram
from pyroseq.models import DDSSM, DKF

NUM_TRAIN, NUM_TEST, NUM_STEPS = (64, 16, 15) if SMOKE else (512, 256, 600)
HISTORY, HORIZON = 32, 10

# %% [markdown]
# ## The data
#
# $z_1 \sim \mathcal N(0, 1)$, $z_t = 0.9\, z_{t-1} + 4 s_t$ with $s_t = \pm 1$ equally likely, and
# $x_t = z_t + 0.2\, e_t$. Every step jumps up or down by 4: a Gaussian transition can only put its mass in
# between. Training series have length 32; test series have 32 steps of history and 10 to forecast.

# %%
x_train = bimodal(NUM_TRAIN, 32, seed=0)
x_test, z_test = bimodal(NUM_TEST, HISTORY + HORIZON, seed=1, return_latents=True)
x_hist, future = x_test[:, :HISTORY], x_test[:, HISTORY:]
print("train", tuple(x_train.shape), "test", tuple(x_test.shape))

fig, ax = plt.subplots(figsize=(9, 3))
for i in range(3):
    ax.plot(x_test[i, :, 0], lw=1, label=f"series {i}")
ax.set(xlabel="t", ylabel="x", title="three test series")
ax.legend(fontsize=8);

# %% [markdown]
# ## Two models, one API
#
# Both are `PyroModule`s with `model(x)` / `guide(x)` methods; they share the structured guide (a backward GRU
# over the future of the series), the emission and the learned initial prior, and differ only in the
# transition. `fit` runs SVI with a KL warm-up; the loss is the negative ELBO per series.

# %%
sizes = dict(rnn_dim=32, hidden_dim=32)
torch.manual_seed(0)
dkf = DKF(obs_dim=1, latent_dim=1, transition_dim=32, **sizes)
torch.manual_seed(0)
ddssm = DDSSM(obs_dim=1, latent_dim=1, denoiser_dim=48, denoiser_blocks=2, sigma_data=1.0,
              baseline="persistence", num_steps=8, **sizes)
models = {"DKF": dkf, "DDSSM": ddssm}

losses, seconds = {}, {}
for name, model in models.items():
    start = time.perf_counter()
    losses[name] = fit(model, x_train, num_steps=NUM_STEPS, batch_size=64, lr=3e-3, lr_decay=0.1,
                       kl_schedule=("linear", max(1, 2 * NUM_STEPS // 5), 1.0, 0.0), seed=0, progress=False)
    seconds[name] = time.perf_counter() - start
    print(f"{name}: {NUM_STEPS} steps in {seconds[name]:.0f} s, final loss {np.mean(losses[name][-50:]):.1f}")

fig, ax = plt.subplots(figsize=(8, 3))
for name, loss in losses.items():
    ax.plot(np.convolve(loss, np.ones(10) / 10, mode="valid"), label=name)
ax.set(xlabel="step", ylabel="negative ELBO per series (moving average)", ylim=(None, np.percentile(losses["DKF"], 95)))
ax.legend();

# %% [markdown]
# ## Forecasts
#
# `forecast` encodes the history with the guide, rolls the latent state forward with the learned transition
# and decodes: samples of shape `(S, N, H, C)`. The one-step quantity $x_{t+1} - 0.9\, x_t$ has a known
# bimodal distribution, so its histogram shows directly whether a model captured the two modes (JSD: Jensen-
# Shannon divergence to the true density, lower is better).

# %%
import pandas as pd

samples = {name: forecast(m, x_hist, HORIZON, num_samples=50, seed=0) for name, m in models.items()}
rows = {}
for name, s in samples.items():
    centred = s[:, :, 0, 0] - 0.9 * x_hist[:, -1, 0]
    rows[name] = {"JSD 1-step": jsd_histogram(centred, bimodal_centred_density()),
                  "CRPS 1": crps(s[:, :, :1], future[:, :1]).item(),
                  f"CRPS {HORIZON}": crps(s, future).item(),
                  f"ES {HORIZON}": energy_score(s, future).item(),
                  "train s": seconds[name]}
pd.DataFrame(rows).T.round(3)

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
for ax, name in zip(axes[:2], models):
    plot_forecast(x_hist, samples[name], truth=future, series=0, ax=ax, num_paths=3)
    ax.set_title(f"{name}: forecast of test series 0")
    ax.set_xlim(20, HISTORY + HORIZON)
centred = {name: s[:, :, 0, 0] - 0.9 * x_hist[:, -1, 0] for name, s in samples.items()}
plot_predictive_histogram(centred["DDSSM"], bimodal_centred_density(), bins=80, ax=axes[2], label="DDSSM",
                          others={"DKF": centred["DKF"]})
axes[2].set_title("one-step predictive of x[t+1] - 0.9 x[t]")
fig.tight_layout()


# %% [markdown]
# ## Inferred latent paths
#
# `to_inference_data` draws latent trajectories from the guide $q(z \mid x)$ and returns an ArviZ
# `InferenceData`. A latent state-space model is identified only up to an invertible map of the latent
# space, so before comparing with the true $z$ we align each model's latent with the truth by a least-squares
# affine map $a z + b$ (fitted on the posterior means of all test series; a flip or rescaling is not an
# error of the model).

# %%
def aligned_posterior(model, x, z_true, num_samples=50):
    idata = to_inference_data(model, x, num_samples=num_samples, seed=0)
    z = torch.as_tensor(idata.posterior["z"].values[0, ..., 0])          # (S, N, T)
    mean = z.mean(0).flatten()
    design = torch.stack([mean, torch.ones_like(mean)], 1).double()
    a, b = torch.linalg.lstsq(design, z_true[..., 0].flatten().double().unsqueeze(1)).solution.flatten()
    return (a * z + b).float(), (a.item(), b.item())

n_show = 32
aligned = {}
fig, axes = plt.subplots(1, 2, figsize=(14, 3.5), sharey=True)
for ax, (name, model) in zip(axes, models.items()):
    z_al, (a, b) = aligned_posterior(model, x_hist[:n_show], z_test[:n_show, :HISTORY])
    aligned[name] = (z_al, a, b)
    for path in z_al[:20, 0]:
        ax.plot(path, color="tab:blue", lw=0.6, alpha=0.4)
    ax.plot(z_test[0, :HISTORY, 0], "r--", lw=1.4, label="true z")
    rmse = (z_al.mean(0) - z_test[:n_show, :HISTORY, 0]).pow(2).mean().sqrt().item()
    ax.set_title(f"{name}: 20 guide draws of z (series 0), aligned; RMSE of mean {rmse:.2f}")
    ax.set_xlabel("t")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## The learned transition against the true one
#
# The true transition moves $z_t - 0.9\, z_{t-1}$ to exactly $-4$ or $+4$. We take latent paths drawn from
# the guide, sample $z_t \sim p_\psi(\cdot \mid z_{t-1})$ from each model's learned transition
# (`model.transition_distribution(history, sampling=True)`; for DDSSM a `DiffusionTransition`, sampled with the
# Heun sampler), map both to the aligned scale and histogram $z_t - 0.9\, z_{t-1}$.

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 3.5), sharey=True)
for ax, (name, model) in zip(axes, models.items()):
    idata = to_inference_data(model, x_hist[:n_show], num_samples=10, seed=1)
    z = torch.as_tensor(idata.posterior["z"].values[0]).float()           # (S, N, T, 1)
    history = z[:, :, :-1].unsqueeze(-2)                                   # (S, N, T - 1, 1, 1)
    with torch.no_grad():
        z_next = model.transition_distribution(history, sampling=True).sample()
    _, a, b = aligned[name]
    step = (a * z_next + b) - 0.9 * (a * z[:, :, :-1] + b)
    ax.hist(step.flatten().numpy(), bins=120, range=(-10, 10), density=True, color="tab:blue", alpha=0.6,
            label=f"{name} transition")
    for v in (-4, 4):
        ax.axvline(v, color="red", ls="--", lw=1.2, label="true (point masses at -4, +4)" if v < 0 else None)
    ax.set(title=f"{name}: z[t] - 0.9 z[t-1] under the learned transition", xlabel="value")
    ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## What to take away
#
# - The DKF's Gaussian transition has to cover both jumps with one bell, so its forecasts put most mass
#   where the process never goes; the DDSSM's diffusion transition puts its mass on the two jumps.
# - CRPS and the energy score judge the whole forecast distribution but are not very sensitive to its
#   *shape*: on this process even a perfect model scores only about 0.86x a moment-matched Gaussian in CRPS,
#   and after this short training the two models are close on the 10-step scores. The one-step JSD and the
#   histograms show the difference directly.
# - Both models share everything but the transition; DDSSM's training step costs about 2-3x the DKF's.
# - This run is short (600 steps on 512 series). The full comparison (6000 steps, 1024 series, IWAE
#   bounds, timing; `python benchmarks/ddssm_vs_dkf.py`) is reported in the README's Results section;
#   `pyroseq demo` runs a shortened version from the command line.
