"""The forecasters a user would pick instead of pyroseq, on the protocol of benchmarks/forecasting.py.

Each peer returns forecast samples ``(S, N, H, C)`` for the ``N`` origins of the test part, in the task's
standardised units, plus its training CPU time (0 for the local statistical models, which are fitted at every
origin and so count in the forecast cost):

- ``seasonal_naive``: the last season repeated (a point forecast: one sample; its CRPS equals its MAE);
- ``mstl``, ``mstl_multi``, ``autoets``, ``autoarima`` (statsforecast, default settings): fitted per origin and
  channel on the history window (``mstl_multi`` on ``4 x`` the longest season of history, with every season).
  Their predictive distributions are Gaussian (point forecast +- z sigma, sigma read off the 90% interval), and
  ``S`` independent draws per step and channel are scored like every other row;
- ``deepar`` (GluonTS, torch backend): one global model over the channels (a categorical channel feature, the
  frequency's calendar features and GluonTS's age feature), trained on the training part under the same CPU-time
  budget as the pyroseq models; at each origin it gets every channel's series from its first step (so the age
  feature stays in the range seen in training). ``deepar`` reads exactly the last ``history`` steps, like the
  pyroseq models: GluonTS's lags for the frequency up to ``history / 2`` and a context of ``history`` minus the
  largest lag. ``deepar_long`` keeps GluonTS's default lags (on hourly data up to 721 steps back) with a context of
  ``history``, so it reads ``history`` + 721 steps: more information than the protocol's window.

statsforecast and GluonTS come with the optional ``bench`` extra (``pip install -e .[bench]``); a missing
package raises :class:`PeerUnavailable`, and the benchmark skips that row with the message.
"""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

__all__ = ["PEERS", "LONGER_HISTORY", "PeerUnavailable", "run_peer"]

#: peer name -> description
PEERS = {
    "seasonal_naive": "seasonal naive (last season repeated)",
    "mstl": "statsforecast MSTL (main season)",
    "mstl_multi": "statsforecast MSTL (all seasons, longer history)",
    "autoets": "statsforecast AutoETS",
    "autoarima": "statsforecast AutoARIMA",
    "deepar": "GluonTS DeepAR (torch; reads the history window)",
    "deepar_long": "GluonTS DeepAR (torch; default lags, reads a longer history)",
}

#: peers that read more history than the protocol's window
LONGER_HISTORY = ("mstl_multi", "deepar_long")

Z90 = 1.6448536269514722  # standard normal 95% quantile


class PeerUnavailable(RuntimeError):
    """A peer's package is not installed (or cannot run on this data)."""


def _require(module, extra="bench"):
    try:
        return __import__(module)
    except ImportError as e:
        raise PeerUnavailable(f"{module} is not installed ({e}); install the optional extra: "
                              f"pip install -e '.[{extra}]'") from e


def _windows(task, t0, length):
    """``(N, length, C)`` windows ending before each origin."""
    z = task["z"]
    return torch.stack([z[t - length:t] for t in t0])


def seasonal_naive(task, t0, horizon, season):
    hist = _windows(task, t0, season)
    reps = -(-horizon // season)
    return hist.repeat(1, reps, 1)[:, :horizon][None]


def _stats_model(name, seasons, horizon):
    _require("statsforecast")
    from statsforecast.models import MSTL, AutoARIMA, AutoETS

    main = seasons[0]
    if name == "mstl":
        return MSTL(season_length=main, alias="model")
    if name == "mstl_multi":
        if len(seasons) < 2:
            raise PeerUnavailable(f"mstl_multi needs two or more seasons (this data has {list(seasons)})")
        return MSTL(season_length=list(seasons), alias="model")
    if name == "autoets":
        return AutoETS(season_length=main, alias="model")
    if name == "autoarima":
        return AutoARIMA(season_length=main, alias="model")
    raise ValueError(name)


def statsforecast_samples(name, task, t0, history, horizon, seasons, num_samples, seed=0):
    """Gaussian samples ``(S, N, H, C)`` of a statsforecast model fitted per origin and channel."""
    _require("statsforecast")
    from statsforecast import StatsForecast

    model = _stats_model(name, seasons, horizon)
    length = 4 * max(seasons) if name == "mstl_multi" else history
    if min(t0) < length:
        raise PeerUnavailable(f"{name} needs {length} steps of history before the first origin {min(t0)}")
    hist = _windows(task, t0, length).numpy()  # (N, L, C)
    N, L, C = hist.shape
    frame = pd.DataFrame({"unique_id": np.repeat(np.arange(N * C), L),
                          "ds": np.tile(np.arange(L), N * C),
                          "y": hist.transpose(0, 2, 1).reshape(-1).astype(np.float64)})
    # Warm the numba-compiled code on one series so the per-origin cost does not count compilation.
    StatsForecast(models=[model], freq=1, n_jobs=1).forecast(df=frame[frame.unique_id == 0], h=horizon, level=[90])
    t = time.process_time()
    out = StatsForecast(models=[model], freq=1, n_jobs=1).forecast(df=frame, h=horizon, level=[90])
    cpu = time.process_time() - t
    out = out.sort_values(["unique_id", "ds"])
    mean = out["model"].to_numpy().reshape(N, C, horizon).transpose(0, 2, 1)
    sigma = ((out["model-hi-90"] - out["model-lo-90"]).to_numpy() / (2 * Z90)).reshape(N, C, horizon)
    sigma = np.clip(np.nan_to_num(sigma.transpose(0, 2, 1), nan=0.0), 0.0, None)
    mean = np.nan_to_num(mean, nan=0.0)
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn((num_samples, N, horizon, C), generator=g, dtype=torch.float64)
    samples = torch.from_numpy(mean)[None] + torch.from_numpy(sigma)[None] * eps
    info = dict(distribution="Gaussian: point forecast + sigma from the 90% interval; independent draws",
                history=length, seasons=list(seasons) if name == "mstl_multi" else [seasons[0]])
    return samples.float(), cpu, info


def _gluonts_freq(freq):
    """GluonTS wants pandas period aliases; ``pd.Period`` accepts what ``to_offset`` gives."""
    return pd.tseries.frequencies.to_offset(freq).freqstr


def deepar_samples(task, t0, history, horizon, num_samples, budget_minutes, cache_dir, seed=0, quick=False,
                   long=False):
    """DeepAR trained under ``budget_minutes`` of CPU time (cached), forecasting every origin; ``long=False``
    reads only the last ``history`` steps, ``long=True`` GluonTS's default lags on top of them."""
    _require("gluonts")
    _require("lightning")
    import lightning.pytorch as pl
    from gluonts.dataset.common import ListDataset
    from gluonts.time_feature import get_lags_for_frequency
    from gluonts.torch.model.deepar import DeepAREstimator
    from gluonts.torch.model.predictor import PyTorchPredictor

    z, split, dates = task["z"].numpy(), task["split"], task["dates"]
    C = z.shape[1]
    freq = _gluonts_freq(task["freq"])
    start = pd.Period(dates.iloc[0], freq=freq) if dates is not None else pd.Period("2000-01-03", freq=freq)
    time_features = None if dates is not None else []  # None: GluonTS's calendar features of the frequency

    def entries(ends):
        return ListDataset([{"target": z[:end, c], "start": start, "feat_static_cat": [c]}
                            for end in ends for c in range(C)], freq=freq)

    lags = get_lags_for_frequency(freq)
    if long:
        context = history
    else:
        lags = [lag for lag in lags if lag <= history // 2] or [1]
        context = history - max(lags)
    cache_dir = Path(cache_dir) / ("deepar_long" if long else "deepar")
    meta_path = cache_dir / "meta.json"
    pl.seed_everything(seed, verbose=False)
    if (cache_dir / "predictor").exists() and meta_path.exists():
        import json

        predictor = PyTorchPredictor.deserialize(cache_dir / "predictor")
        meta = json.loads(meta_path.read_text())
    else:
        class Budget(pl.Callback):
            def __init__(self):
                self.t0, self.steps = time.process_time(), 0

            def on_train_batch_end(self, trainer, *args):
                self.steps += 1
                if time.process_time() - self.t0 > budget_minutes * 60:
                    trainer.should_stop = True

        budget = Budget()
        est = DeepAREstimator(freq=freq, prediction_length=horizon, context_length=context, lags_seq=lags,
                              num_feat_static_cat=1, cardinality=[C], time_features=time_features,
                              hidden_size=8 if quick else 40, batch_size=32, num_batches_per_epoch=50,
                              trainer_kwargs=dict(max_epochs=10**6, accelerator="cpu", devices=1,
                                                  callbacks=[budget], enable_progress_bar=False,
                                                  enable_model_summary=False, logger=False,
                                                  default_root_dir=str(cache_dir)))
        predictor = est.train(entries([split]), cache_data=True)
        cpu = time.process_time() - budget.t0
        meta = dict(steps=budget.steps, cpu_seconds=cpu, finished=True, budget_minutes=budget_minutes,
                    budget_clock="process CPU time, 1 thread", batch_size=32, context_length=context,
                    lags=lags, steps_read=context + max(lags),
                    calendar_features=dates is not None)
        cache_dir.mkdir(parents=True, exist_ok=True)
        (cache_dir / "predictor").mkdir(exist_ok=True)
        predictor.serialize(cache_dir / "predictor")
        import json

        meta_path.write_text(json.dumps(meta, indent=1))
    torch.manual_seed(seed)
    t = time.process_time()
    forecasts = list(predictor.predict(entries(t0), num_samples=num_samples))
    cpu = time.process_time() - t
    samples = np.stack([f.samples for f in forecasts])  # (N * C, S, H)
    samples = samples.reshape(len(t0), C, num_samples, horizon).transpose(2, 0, 3, 1)
    return torch.from_numpy(np.ascontiguousarray(samples)).float(), cpu, dict(train=meta)


def run_peer(name, task, t0, history, horizon, seasons, num_samples, budget_minutes, cache_dir, seed=0,
             quick=False):
    """Samples ``(S, N, H, C)``, forecast CPU seconds and an info dict (with ``train`` for trained peers)."""
    if name == "seasonal_naive":
        t = time.process_time()
        samples = seasonal_naive(task, t0, horizon, seasons[0])
        return samples, time.process_time() - t, dict(season=seasons[0], point_forecast=True)
    if name in ("mstl", "mstl_multi", "autoets", "autoarima"):
        return statsforecast_samples(name, task, t0, history, horizon, seasons, num_samples, seed)
    if name in ("deepar", "deepar_long"):
        return deepar_samples(task, t0, history, horizon, num_samples, budget_minutes, cache_dir, seed, quick,
                              long=name == "deepar_long")
    raise ValueError(f"unknown peer {name!r}; choose from {list(PEERS)}")
