"""ETTh1 conditional tasks shared by benchmarks/forecasting.py and benchmarks/imputation.py: the data split,
calendar covariates, the models and their CPU-budgeted training (resumable; weights cached so the imputation
benchmark reuses the conditional models trained for forecasting).

Protocol: ETTh1 (17,420 hourly steps, 7 channels). The last 20% of the series is the test part; the first 80%
gives the per-channel standardisation and the training windows (stride 1, ``HISTORY + HORIZON = 120`` steps).
All scores are in standardised units (per channel, training statistics), so channels weigh equally.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import BudgetClock, OutOfTime, log, read_json, write_json  # noqa: E402

from pyroseq.data.csv import find_data_file  # noqa: E402
from pyroseq.models import DDSSM, DKF, ConditionalDiffusion, LatentDiffusionSSM  # noqa: E402

__all__ = ["HISTORY", "HORIZON", "MODELS", "CONDITIONAL", "load_task", "build_model", "trained_model"]

HISTORY, HORIZON = 96, 24
WINDOW = HISTORY + HORIZON
TEST_FRACTION = 0.2
NUM_COVARIATES = 4  # hour of day and day of week, as sine/cosine pairs

#: model name -> (description, needs covariates in fit/forecast)
MODELS = {
    "dkf": "DKF (Gaussian transition and emission)",
    "ddssm": "DDSSM (diffusion transition)",
    "latent_diffusion": "latent-diffusion SSM (DDSSM + DiM-TS emission)",
    "cond_dimts": "conditional DiM-TS",
    "cond_stagediff": "conditional Stage-Diff (stages of 24)",
    "cond_csdi": "conditional CSDI-style",
}
CONDITIONAL = ("cond_dimts", "cond_stagediff", "cond_csdi")


def calendar_features(dates):
    """Hour-of-day and day-of-week as sine/cosine pairs: an array ``(T, 4)``."""
    hour = dates.dt.hour.to_numpy() + dates.dt.minute.to_numpy() / 60
    dow = dates.dt.day_of_week.to_numpy() + hour / 24
    feats = [np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
             np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7)]
    return np.stack(feats, -1).astype(np.float32)


def load_task():
    """The standardised series, its covariates and the split.

    :returns: dict with ``z`` ``(T, 7)`` standardised series, ``u`` ``(T, 4)`` covariates, ``split`` (first test
        index), ``loc``/``scale`` and ``names``.
    """
    frame = pd.read_csv(find_data_file("ETTh1.csv", "ETTh.csv"))
    dates = pd.to_datetime(frame.pop("date"))
    values = torch.tensor(frame.to_numpy(np.float32))
    split = int(round(len(values) * (1 - TEST_FRACTION)))
    loc, scale = values[:split].mean(0), values[:split].std(0)
    return dict(z=(values - loc) / scale, u=torch.tensor(calendar_features(dates)), split=split, loc=loc,
                scale=scale, names=list(frame.columns))


def training_windows(task, length=WINDOW):
    """Stride-1 windows of the training part: ``(x (N, length, 7), u (N, length, 4))``."""
    z, u, split = task["z"], task["u"], task["split"]
    x = z[:split].unfold(0, length, 1).permute(0, 2, 1).contiguous()
    c = u[:split].unfold(0, length, 1).permute(0, 2, 1).contiguous()
    return x, c


def build_model(name, quick=False):
    """A fresh model of the benchmark (all take the 4 calendar covariates)."""
    C, p = 7, NUM_COVARIATES
    ssm = dict(rnn_dim=64, hidden_dim=64) if not quick else dict(rnn_dim=8, hidden_dim=8)
    small = quick
    if name == "dkf":
        return DKF(C, 16, covariate_dim=p, **ssm)
    if name == "ddssm":
        return DDSSM(C, 16, covariate_dim=p, num_steps=10, denoiser_dim=32 if small else 128, **ssm)
    if name == "latent_diffusion":
        net = dict(hidden_dim=16 if small else 32, d_state=8)
        return LatentDiffusionSSM(C, 16, WINDOW, backbone="dimts", covariate_dim=p, num_steps=10,
                                  emission_num_steps=10, emission_objective="edm",
                                  denoiser_dim=32 if small else 128, emission_net_kwargs=net, **ssm)
    common = dict(horizon=HORIZON, mask_strategy="mixed", covariate_dim=p, num_steps=10)
    if name == "cond_dimts":
        return ConditionalDiffusion(C, WINDOW, backbone="dimts", hidden_dim=16 if small else 32, d_state=8,
                                    **common)
    if name == "cond_stagediff":
        return ConditionalDiffusion(C, WINDOW, backbone="stagediff", stage_length=HORIZON,
                                    d_model=16 if small else 32, num_heads=4, num_encoder_layers=2,
                                    kernel_sizes=(3, 1), **common)
    if name == "cond_csdi":
        return ConditionalDiffusion(C, WINDOW, backbone="csdi", channels=16 if small else 32, num_layers=3,
                                    **common)
    raise ValueError(f"unknown model {name!r}; choose from {list(MODELS)}")


def trained_model(name, task, directory, budget_minutes, batch_size=32, lr=1e-3, seed=0, quick=False):
    """Build and train ``name`` on the training windows under a CPU-time budget (resumable), or load it.

    :returns: ``(model, meta)``.
    """
    from pyroseq.inference import fit

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights, meta_path, ckpt = directory / f"{name}.pt", directory / f"{name}.json", directory / f"{name}.ckpt"
    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    model = build_model(name, quick)
    meta = read_json(meta_path)
    if meta is not None and meta.get("finished") and weights.exists():
        model.load_state_dict(torch.load(weights))
        log(f"{name}: loaded ({meta['steps']} steps, {meta['cpu_seconds'] / 60:.1f} CPU min)")
        model.eval()
        return model, meta
    x, u = training_windows(task)
    clock = BudgetClock(budget_minutes, meta)
    pyro.clear_param_store()
    state = {"step": 0}

    def callback(step, loss):
        state["step"] = step + 1
        if (step + 1) % 50 == 0:
            write_json(meta_path, dict(steps=step + 1, cpu_seconds=clock.cpu(), seconds=clock.wall(),
                                       finished=False, loss=loss))
            log(f"{name}: step {step + 1} loss {loss:.2f} ({clock.cpu() / 60:.1f} CPU min)")
        clock.check()

    log(f"{name}: training on {tuple(x.shape)} windows, budget {budget_minutes} CPU min, "
        f"spent {clock.spent / 60:.1f}")
    kl = ("linear", 500, 1.0, 0.0) if name in ("dkf", "ddssm", "latent_diffusion") else None
    try:
        fit(model, x, covariates=u, num_steps=10**7, batch_size=batch_size, seed=seed, lr=lr, clip_norm=10.0,
            kl_schedule=kl, ema_decay=0.999, checkpoint=str(ckpt), checkpoint_every=50, resume=True,
            progress=False, callback=callback)
    except OutOfTime:
        pass
    meta = dict(steps=state["step"], cpu_seconds=clock.cpu(), seconds=clock.wall(), finished=True,
                budget_minutes=budget_minutes, budget_clock="process CPU time, 1 thread", batch_size=batch_size,
                lr=lr, window=WINDOW, parameters=sum(p.numel() for p in model.parameters() if p.requires_grad))
    torch.save(model.state_dict(), weights)
    write_json(meta_path, meta)
    log(f"{name}: trained {meta['steps']} steps in {meta['cpu_seconds'] / 60:.1f} CPU min")
    model.eval()
    return model, meta

