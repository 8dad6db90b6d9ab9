"""Conditional tasks shared by benchmarks/forecasting.py and benchmarks/imputation.py: the data split,
calendar covariates, the models and their CPU-budgeted training (resumable; weights cached so the imputation
benchmark reuses the conditional models trained for forecasting).

Protocol (ETTh1 by default: 17,420 hourly steps, 7 channels; any CSV with a date column and numeric columns
through :func:`load_task`): the last 20% of the series is the test part; the first 80% gives the per-channel
standardisation and the training windows (stride 1, ``history + horizon`` steps, 96 + 24 = 120 on ETTh1).
All scores are in standardised units (per channel, training statistics), so channels weigh equally.

Trained weights, checkpoints and their metadata live in the ignored cache ``benchmarks/.cache/forecasting/``
(:data:`MODELS_DIR` for ETTh1 with history 96 and horizon 24).
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

__all__ = ["HISTORY", "HORIZON", "MODELS", "CONDITIONAL", "CACHE", "MODELS_DIR", "DATASETS", "load_task",
           "read_series", "calendar_features", "build_model", "trained_model", "training_windows"]

HISTORY, HORIZON = 96, 24
WINDOW = HISTORY + HORIZON
TEST_FRACTION = 0.2
NUM_COVARIATES = 4  # two calendar cycles (e.g. hour of day and day of week), as sine/cosine pairs

#: Ignored directory of trained weights, checkpoints and training logs.
CACHE = Path(__file__).resolve().parent / ".cache" / "forecasting"
#: Trained models of the ETTh1 protocol (history 96, horizon 24).
MODELS_DIR = CACHE / "etth1_96_24" / "models"

#: Shipped data sets by name: candidate file names (located with ``pyroseq.data.find_data_file``) and the
#: frequency to assume when the file has no date column.
DATASETS = {
    "etth1": (("ETTh1.csv", "ETTh.csv"), "h"),
    "stocks": (("stock_data.csv",), "B"),
}

#: model name -> description
MODELS = {
    "dkf": "DKF (Gaussian transition and emission)",
    "ddssm": "DDSSM (diffusion transition)",
    "latent_diffusion": "latent-diffusion SSM (DDSSM + DiM-TS emission)",
    "cond_dimts": "conditional DiM-TS",
    "cond_stagediff": "conditional Stage-Diff (stages of one horizon)",
    "cond_csdi": "conditional CSDI-style",
}
CONDITIONAL = ("cond_dimts", "cond_stagediff", "cond_csdi")

_DATE_COLUMNS = ("date", "datetime", "time", "timestamp", "ds")


def read_series(path, freq=None):
    """A CSV's dates and numeric columns.

    The date column is the first column named ``date``, ``datetime``, ``time``, ``timestamp`` or ``ds`` (any
    case), or else a first column that parses as dates; every other column must be numeric. The frequency is
    inferred from the dates (``pandas.infer_freq``, else the most common step); a file without dates needs
    ``freq``.

    :returns: ``(dates or None, frame, freq)`` with ``freq`` a pandas offset alias such as ``"h"`` or ``"B"``.
    """
    frame = pd.read_csv(path)
    date_col = next((c for c in frame.columns if str(c).strip().lower() in _DATE_COLUMNS), None)
    if date_col is None and not pd.api.types.is_numeric_dtype(frame[frame.columns[0]]):
        try:
            pd.to_datetime(frame[frame.columns[0]].head(20))
            date_col = frame.columns[0]
        except (ValueError, TypeError):
            pass
    dates = None
    if date_col is not None:
        dates = pd.to_datetime(frame.pop(date_col)).reset_index(drop=True)
    non_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise ValueError(f"columns {non_numeric} of {path} are not numeric")
    if frame.shape[0] < 10 or frame.shape[1] == 0:
        raise ValueError(f"{path} holds too few rows or no numeric columns (shape {frame.shape})")
    if frame.isna().to_numpy().any():
        frame = frame.ffill().bfill()
        log(f"{Path(path).name}: missing values filled forward (then backward)")
    if dates is not None and freq is None:
        freq = infer_frequency(dates)
    if freq is None:
        raise ValueError(f"{path} has no date column: pass its frequency (--freq, e.g. 'h', 'D', 'B')")
    return dates, frame.astype(np.float32), freq


def infer_frequency(dates):
    """The pandas offset alias of ``dates`` (``infer_freq``, else the most common step)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        freq = pd.infer_freq(dates) if len(dates) >= 3 else None
        if freq is None:
            step = dates.diff().dropna().mode().iloc[0]
            freq = pd.tseries.frequencies.to_offset(step).freqstr
    return str(freq)


def freq_kind(freq):
    """``"subdaily"``, ``"daily"``, ``"business"``, ``"weekly"``, ``"monthly"``, ``"quarterly"`` or ``"yearly"``."""
    offset = pd.tseries.frequencies.to_offset(freq)
    if isinstance(offset, pd.offsets.Tick) and pd.Timedelta(offset) < pd.Timedelta(days=1):
        return "subdaily"
    code = offset.rule_code.upper()
    if code in ("B", "C"):
        return "business"
    if code == "D":
        return "daily"
    if code.startswith("W"):
        return "weekly"
    if code.startswith(("M", "BM", "SM", "CBM")):
        return "monthly"
    if code.startswith(("Q", "BQ")):
        return "quarterly"
    if code.startswith(("A", "Y", "BA", "BY")):
        return "yearly"
    return "subdaily"


def steps_per_day(freq):
    """Steps per day of a sub-daily frequency (at least 1)."""
    return max(1, int(round(pd.Timedelta(days=1) / pd.Timedelta(pd.tseries.frequencies.to_offset(freq)))))


def protocol_defaults(freq):
    """History, horizon, seasons (``seasons[0]`` the main one) and origin stride for a frequency.

    Hourly: 96, 24, (24, 168), 48 (the ETTh1 protocol); other sub-daily: 4 days, 1 day, (day, week), 1 day;
    business days: 60, 5, (5,), 5; calendar days: 56, 7, (7,), 7; weekly: 52, 4, (52,), 4; monthly: 36, 12, (12,),
    12; quarterly: 16, 4, (4,), 4; yearly: 12, 3, (1,), 3.
    """
    kind = freq_kind(freq)
    if kind == "subdaily":
        d = steps_per_day(freq)
        if d == 24:
            return dict(history=96, horizon=24, seasons=(24, 168), stride=48)
        return dict(history=4 * d, horizon=d, seasons=(d, 7 * d), stride=d)
    return {"business": dict(history=60, horizon=5, seasons=(5,), stride=5),
            "daily": dict(history=56, horizon=7, seasons=(7,), stride=7),
            "weekly": dict(history=52, horizon=4, seasons=(52,), stride=4),
            "monthly": dict(history=36, horizon=12, seasons=(12,), stride=12),
            "quarterly": dict(history=16, horizon=4, seasons=(4,), stride=4),
            "yearly": dict(history=12, horizon=3, seasons=(1,), stride=3)}[kind]


def calendar_features(dates, freq="h"):
    """Two calendar cycles as sine/cosine pairs, an array ``(T, 4)``: hour of day and day of week (sub-daily),
    day of week and day of year (daily, business days), week and month of year (weekly), month of year and
    quarter (monthly and coarser). ``dates=None`` (a file without dates) gives zeros."""
    if dates is None:
        return None
    kind = freq_kind(freq)
    hour = dates.dt.hour.to_numpy() + dates.dt.minute.to_numpy() / 60
    doy = dates.dt.day_of_year.to_numpy() - 1
    if kind == "subdaily":
        a, b = hour / 24, (dates.dt.day_of_week.to_numpy() + hour / 24) / 7
    elif kind in ("daily", "business"):
        a, b = dates.dt.day_of_week.to_numpy() / 7, doy / 365.25
    elif kind == "weekly":
        a, b = doy / 365.25, (dates.dt.month.to_numpy() - 1) / 12
    else:
        a, b = (dates.dt.month.to_numpy() - 1) / 12, ((dates.dt.month.to_numpy() - 1) % 3) / 3
    feats = [np.sin(2 * np.pi * a), np.cos(2 * np.pi * a), np.sin(2 * np.pi * b), np.cos(2 * np.pi * b)]
    return np.stack(feats, -1).astype(np.float32)


def resolve_data(data=None, freq=None):
    """``(path, freq)`` of ``data``: a shipped name (``etth1``, ``stocks``; located by ``pyroseq.data``) or a
    CSV path. ``None`` is ETTh1."""
    key = "etth1" if data is None else str(data).lower()
    if key in DATASETS:
        names, default_freq = DATASETS[key]
        return find_data_file(*names), freq or default_freq
    path = Path(data)
    if not path.is_file():
        raise FileNotFoundError(f"{data} is neither a shipped data set ({', '.join(DATASETS)}) nor a CSV file")
    return path, freq


def load_task(data=None, freq=None, test_fraction=TEST_FRACTION):
    """The standardised series, its covariates and the split.

    :param data: a shipped data set name or a CSV path (default ETTh1).
    :param str freq: the frequency if the file has no date column (shipped sets know theirs).
    :returns: dict with ``z`` ``(T, C)`` standardised series, ``u`` ``(T, 4)`` calendar covariates (zeros
        without dates), ``split`` (first test index), ``loc``/``scale``, ``names``, ``dates`` (or None),
        ``freq``, ``path`` and ``tag`` (the file's stem, lower case).
    """
    path, freq = resolve_data(data, freq)
    dates, frame, freq = read_series(path, freq)
    values = torch.tensor(frame.to_numpy(np.float32))
    split = int(round(len(values) * (1 - test_fraction)))
    loc, scale = values[:split].mean(0), values[:split].std(0).clamp_min(1e-8)
    feats = calendar_features(dates, freq)
    u = torch.zeros(len(values), NUM_COVARIATES) if feats is None else torch.tensor(feats)
    return dict(z=(values - loc) / scale, u=u, split=split, loc=loc, scale=scale, names=list(frame.columns),
                dates=dates, freq=freq, path=str(path), tag=Path(path).stem.lower())


def training_windows(task, length=WINDOW):
    """Stride-1 windows of the training part: ``(x (N, length, C), u (N, length, 4))``."""
    z, u, split = task["z"], task["u"], task["split"]
    x = z[:split].unfold(0, length, 1).permute(0, 2, 1).contiguous()
    c = u[:split].unfold(0, length, 1).permute(0, 2, 1).contiguous()
    return x, c


def build_model(name, quick=False, channels=7, history=HISTORY, horizon=HORIZON, seasonal_lag=None):
    """A fresh model of the benchmark (all take the 4 calendar covariates; ``seasonal_lag`` is the state-space
    models' transition input of the observations one season back)."""
    C, p, window = channels, NUM_COVARIATES, history + horizon
    ssm = dict(rnn_dim=64, hidden_dim=64) if not quick else dict(rnn_dim=8, hidden_dim=8)
    # Each series (conditional models: each window) standardised by its history's own statistics as well, so
    # forecasts follow the series' level instead of the training mean.
    ssm_local = dict(ssm, local_scaling=history, seasonal_lag=seasonal_lag)
    small = quick
    if name == "dkf":
        return DKF(C, 16, covariate_dim=p, **ssm_local)
    if name == "ddssm":
        return DDSSM(C, 16, covariate_dim=p, num_steps=10, denoiser_dim=32 if small else 128, **ssm_local)
    if name == "latent_diffusion":
        net = dict(hidden_dim=16 if small else 32, d_state=8)
        return LatentDiffusionSSM(C, 16, window, backbone="dimts", covariate_dim=p, num_steps=10,
                                  emission_num_steps=10, emission_objective="edm",
                                  denoiser_dim=32 if small else 128, emission_net_kwargs=net, **ssm_local)
    common = dict(horizon=horizon, mask_strategy="mixed", covariate_dim=p, num_steps=10, local_scaling=True)
    if name == "cond_dimts":
        return ConditionalDiffusion(C, window, backbone="dimts", hidden_dim=16 if small else 32, d_state=8,
                                    **common)
    if name == "cond_stagediff":
        # Stage-Diff's patches of 4 steps must tile a stage: other horizons take their largest divisor below 4.
        patch = {} if horizon % 4 == 0 else dict(patch_size=max(p for p in (1, 2, 3) if horizon % p == 0))
        return ConditionalDiffusion(C, window, backbone="stagediff", stage_length=horizon,
                                    d_model=16 if small else 32, num_heads=4, num_encoder_layers=2,
                                    kernel_sizes=(3, 1), **patch, **common)
    if name == "cond_csdi":
        return ConditionalDiffusion(C, window, backbone="csdi", channels=16 if small else 32, num_layers=3,
                                    **common)
    raise ValueError(f"unknown model {name!r}; choose from {list(MODELS)}")


def trained_model(name, task, directory, budget_minutes, batch_size=32, lr=1e-3, seed=0, quick=False,
                  history=HISTORY, horizon=HORIZON, snapshot=False, seasonal_lag=None):
    """Build and train ``name`` on the training windows under a CPU-time budget (resumable), or load it.

    A finished model whose budget is smaller than ``budget_minutes`` continues from its checkpoint (so a 30-minute
    model is the 10-minute one trained 20 minutes more). ``snapshot=True`` also keeps the weights and metadata of
    this budget as ``<name>_<budget>min.pt/.json`` (the points of a budget curve).

    :returns: ``(model, meta)``.
    """
    from pyroseq.inference import fit

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights, meta_path, ckpt = directory / f"{name}.pt", directory / f"{name}.json", directory / f"{name}.ckpt"
    snap = f"{name}_{budget_minutes:g}min"
    if snapshot and (directory / f"{snap}.pt").exists() and read_json(directory / f"{snap}.json"):
        weights, meta_path = directory / f"{snap}.pt", directory / f"{snap}.json"
    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    model = build_model(name, quick, channels=task["z"].shape[1], history=history, horizon=horizon,
                        seasonal_lag=seasonal_lag)
    meta = read_json(meta_path)
    if meta is not None and meta.get("finished") and weights.exists():
        more = meta.get("budget_minutes", budget_minutes) < budget_minutes and ckpt.exists()
        if not more:
            model.load_state_dict(torch.load(weights))
            log(f"{name}: loaded ({meta['steps']} steps, {meta['cpu_seconds'] / 60:.1f} CPU min)")
            model.eval()
            return model, meta
        log(f"{name}: continuing from {meta['steps']} steps ({meta['cpu_seconds'] / 60:.1f} CPU min)")
    x, u = training_windows(task, history + horizon)
    clock = BudgetClock(budget_minutes, meta)
    pyro.clear_param_store()
    state = {"step": meta.get("steps", 0) if meta else 0}

    def callback(step, loss):
        state["step"] = step + 1
        if (step + 1) % 50 == 0:
            write_json(meta_path, dict(steps=step + 1, cpu_seconds=clock.cpu(), seconds=clock.wall(),
                                       finished=False, loss=loss, budget_minutes=budget_minutes))
            log(f"{name}: step {step + 1} loss {loss:.2f} ({clock.cpu() / 60:.1f} CPU min)")
        clock.check()

    log(f"{name}: training on {tuple(x.shape)} windows, budget {budget_minutes} CPU min, "
        f"spent {clock.spent / 60:.1f}")
    kl = ("linear", 500, 1.0, 0.0) if name in ("dkf", "ddssm", "latent_diffusion") else None
    try:
        fit(model, x, covariates=u, num_steps=10**7, batch_size=batch_size, seed=seed, lr=lr, clip_norm=10.0,
            kl_schedule=kl, ema_decay=0.999, checkpoint=str(ckpt), checkpoint_every=10, resume=True,
            progress=False, callback=callback)
    except OutOfTime:
        pass
    meta = dict(steps=state["step"], cpu_seconds=clock.cpu(), seconds=clock.wall(), finished=True,
                budget_minutes=budget_minutes, budget_clock="process CPU time, 1 thread", batch_size=batch_size,
                lr=lr, window=history + horizon,
                parameters=sum(p.numel() for p in model.parameters() if p.requires_grad))
    torch.save(model.state_dict(), weights)
    write_json(meta_path, meta)
    if snapshot:
        torch.save(model.state_dict(), directory / f"{snap}.pt")
        write_json(directory / f"{snap}.json", meta)
    log(f"{name}: trained {meta['steps']} steps in {meta['cpu_seconds'] / 60:.1f} CPU min")
    model.eval()
    return model, meta
