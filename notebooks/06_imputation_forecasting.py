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
# # 6. Imputation and forecasting with a conditional diffusion model
#
# `ConditionalDiffusion` learns $p(x_\mathrm{target} \mid x_\mathrm{observed}, u)$ for windows of a fixed
# length. In training, every window's entries are split at random into *conditioning* and *targets*
# (CSDI-style: half the windows hide a random fraction of entries, half hide the last `horizon` steps); the
# observation site is a `ConditionalDiffusionLikelihood` that scores only the targets. One trained model then
#
# - **imputes** any pattern of missing values (`model.impute`), and
# - **forecasts**: a window whose first part is the end of the history and whose last `horizon` steps are
#   missing (`pyroseq.inference.forecast`).
#
# Observed entries are never changed. The denoiser here is the Stage-Diff network (stages of 24 hours); the
# DiM-TS (`backbone="dimts"`) and CSDI-style (`"csdi"`) networks plug in the same way. Hour of day and day of
# week enter as covariates $u_t$.
#
# **Scale note:** a few minutes of training on one CPU core; `benchmarks/forecasting.py` and
# `benchmarks/imputation.py` train longer and compare against DKF, DDSSM, seasonal naive and linear
# interpolation.

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

import pandas as pd

from pyroseq import metrics
from pyroseq.data.csv import find_data_file
from pyroseq.inference import fit, forecast
from pyroseq.models import ConditionalDiffusion

HORIZON, WINDOW = 24, 48
NUM_STEPS = 5 if SMOKE else 1500
try:
    frame = pd.read_csv(find_data_file("ETTh1.csv", "ETTh.csv"))
    dates = pd.to_datetime(frame.pop("date"))
    values = torch.tensor(frame.to_numpy(np.float32))
except FileNotFoundError:
    # ETTh1.csv is not shipped with the package; fall back to a synthetic daily/weekly seasonal series.
    dates = pd.Series(pd.date_range("2016-07-01", periods=17420, freq="h"))
    t = torch.arange(17420.0)[:, None]
    values = torch.sin(2 * np.pi * t / 24 + torch.arange(7.0)) + 0.5 * torch.sin(2 * np.pi * t / 168) \
        + 0.1 * torch.randn(len(t), 7)
    frame = pd.DataFrame(values.numpy(), columns=[f"channel {c}" for c in range(7)])
hour = torch.tensor(dates.dt.hour.to_numpy(), dtype=torch.float32)
dow = torch.tensor(dates.dt.day_of_week.to_numpy(), dtype=torch.float32) + hour / 24
u = torch.stack([torch.sin(2 * np.pi * hour / 24), torch.cos(2 * np.pi * hour / 24),
                 torch.sin(2 * np.pi * dow / 7), torch.cos(2 * np.pi * dow / 7)], -1)
split = int(0.8 * len(values))
z = (values - values[:split].mean(0)) / values[:split].std(0)      # standardised with training statistics
train_x = z[:split].unfold(0, WINDOW, 1).transpose(1, 2)
train_u = u[:split].unfold(0, WINDOW, 1).transpose(1, 2)
if SMOKE:
    train_x, train_u = train_x[:256], train_u[:256]
print("training windows", tuple(train_x.shape), "covariates", tuple(train_u.shape))

# %% [markdown]
# ## Training
#
# `fit` is the same SVI loop as for every pyroseq model; the model draws a fresh conditioning mask for every
# window at every step.

# %%
torch.manual_seed(0)
model = ConditionalDiffusion(obs_dim=7, length=WINDOW, backbone="stagediff", stage_length=24, horizon=HORIZON,
                             covariate_dim=4, num_steps=10, d_model=32, num_heads=4, kernel_sizes=(3, 1))
start = time.process_time()
losses = fit(model, train_x, covariates=train_u, num_steps=NUM_STEPS, batch_size=32, lr=1e-3, seed=0,
             progress=False)
print(f"{NUM_STEPS} steps in {time.process_time() - start:.0f} CPU s")
fig, ax = plt.subplots(figsize=(8, 3))
ax.plot(np.convolve(losses, np.ones(25) / 25, mode="valid") if len(losses) > 50 else losses)
ax.set(xlabel="step", ylabel="loss (moving average)", title="training loss");

# %% [markdown]
# ## Imputation
#
# Test windows from the last 20% of the series, with half of their entries removed at random. We compare the
# median of 20 imputations with linear interpolation along time (on the missing entries only).

# %%
starts = list(range(split, len(z) - WINDOW, 97))[: 8 if SMOKE else 64]
test_x = torch.stack([z[s:s + WINDOW] for s in starts])
test_u = torch.stack([u[s:s + WINDOW] for s in starts])
observed = torch.rand(test_x.shape, generator=torch.Generator().manual_seed(1)) > 0.5
imputed = model.impute(torch.where(observed, test_x, torch.nan), covariates=test_u,
                       num_samples=4 if SMOKE else 20, seed=0)
assert torch.equal(imputed[:, observed], test_x[observed].expand(len(imputed), -1))   # observed kept exactly

def interpolate(x, obs):
    out = x.clone()
    steps = np.arange(x.shape[1])
    for n in range(x.shape[0]):
        for c in range(x.shape[2]):
            o = obs[n, :, c].numpy()
            out[n, :, c] = torch.from_numpy(np.interp(steps, steps[o], x[n, o, c].numpy()).astype(np.float32))
    return out

missing = ~observed
median = imputed.median(0).values
pd.DataFrame({"MAE": [(median - test_x)[missing].abs().mean().item(),
                      (interpolate(test_x, observed) - test_x)[missing].abs().mean().item()],
              "CRPS": [metrics.crps(imputed[:, missing], test_x[missing]).item(), float("nan")]},
             index=["ConditionalDiffusion (median of samples)", "linear interpolation"]).round(4)

# %%
fig, axes = plt.subplots(2, 1, figsize=(11, 5), sharex=True)
for ax, c in zip(axes, (0, 6)):
    n = 0
    q = torch.quantile(imputed[:, n, :, c], torch.tensor([0.05, 0.5, 0.95]), dim=0)
    ax.plot(test_x[n, :, c], color="k", lw=0.8, label="truth")
    ax.fill_between(range(WINDOW), q[0], q[2], alpha=0.3, label="90% band")
    ax.plot(q[1], lw=1, label="median imputation")
    t_obs = observed[n, :, c].nonzero().flatten()
    ax.plot(t_obs, test_x[n, t_obs, c], "o", ms=3, color="k", label="observed")
    ax.set_ylabel(frame.columns[c])
axes[0].legend(fontsize=8, ncol=4)
axes[-1].set_xlabel("hour in window")
fig.tight_layout()

# %% [markdown]
# ## Forecasting
#
# `pyroseq.inference.forecast` calls the model's `forecast_model`: the last `WINDOW - HORIZON` hours of the
# history are the observed part of a window whose last `HORIZON` hours are sampled. Covariates cover history
# and horizon. The baseline is seasonal naive (the last day repeated).

# %%
hist = torch.stack([z[s:s + WINDOW - HORIZON] for s in starts])
future = torch.stack([z[s + WINDOW - HORIZON:s + WINDOW] for s in starts])
samples = forecast(model, hist, HORIZON, num_samples=4 if SMOKE else 50, covariates=test_u, seed=0)
print("forecast samples", tuple(samples.shape))        # (S, N, H, C)
naive = hist[:, -24:]
pd.DataFrame({"CRPS": [metrics.crps(samples, future).item(), (naive - future).abs().mean().item()],
              "MAE (median)": [(samples.median(0).values - future).abs().mean().item(),
                               (naive - future).abs().mean().item()]},
             index=["ConditionalDiffusion", "seasonal naive"]).round(4)

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3), sharey=True)
for ax, n in zip(axes, range(3)):
    q = torch.quantile(samples[:, n, :, 6], torch.tensor([0.05, 0.5, 0.95]), dim=0)
    ax.plot(range(-hist.shape[1], 0), hist[n, :, 6], color="k", lw=0.8)
    ax.plot(range(HORIZON), future[n, :, 6], color="k", lw=0.8, ls="--", label="truth")
    ax.fill_between(range(HORIZON), q[0], q[2], alpha=0.3, label="90% band")
    ax.plot(range(HORIZON), q[1], label="median")
    ax.set_title(f"{frame.columns[6]}, test window {n}", fontsize=9)
axes[0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Next steps
#
# - `LatentDiffusionSSM(obs_dim, latent_dim, length, backbone="dimts")` combines DDSSM's diffusion latent
#   dynamics with a diffusion emission over whole windows; it trains, forecasts and converts to ArviZ exactly
#   like DDSSM (notebook 2).
# - `benchmarks/forecasting.py` (history 96, horizon 24) and `benchmarks/imputation.py` (10/50/90% missing)
#   give the full comparison.
