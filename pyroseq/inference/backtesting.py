"""Rolling-origin evaluation of a trained forecaster over one series, in the spirit of
:func:`pyro.contrib.forecast.backtest`, and forecasts longer than a fixed-window model's window.

Unlike :func:`pyro.contrib.forecast.backtest`, the model is trained once beforehand (with
:func:`~pyroseq.inference.fit`) and not refitted at every origin: each origin ``t0`` only conditions the
forecast on the ``history`` steps before it, ``series[t0 - history:t0]``, and the forecast of
``series[t0:t0 + H]`` is scored against what happened.
"""

import math

import numpy as np
import torch

from .forecast import forecast

__all__ = ["BacktestResult", "backtest", "forecast_scores", "rolling_forecast", "rolling_origins", "rolling_steps"]

#: The scores of a backtest, per horizon step: CRPS, energy score (of the ``C`` channels of a step),
#: empirical coverage of the central 50% and 90% intervals, and mean absolute error of the median.
METRICS = ("crps", "energy_score", "coverage_50", "coverage_90", "mae")


def rolling_steps(model, horizon, step=None):
    """The horizons of the successive forecasts :func:`rolling_forecast` makes: ``[horizon]`` for a model
    without a window ``length`` or a horizon shorter than it, else pieces of ``step`` steps.

    :param model: a forecasting model.
    :param int horizon: the whole horizon ``H``.
    :param int step: see :func:`rolling_forecast`.
    :returns: a list of positive integers summing to ``H``.
    :raises ValueError: for a bad horizon or step.
    """
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    horizon = int(horizon)
    window = getattr(model, "length", None)
    if not isinstance(window, int) or horizon < window:
        return [horizon]
    if step is None:
        trained = getattr(model, "horizon", None)
        step = trained if isinstance(trained, int) and 1 <= trained < window else max(1, window // 2)
    if int(step) != step or not 1 <= step < window:
        raise ValueError(f"step must be an integer in [1, {window - 1}] (the model forecasts within windows of "
                         f"{window} steps), got {step!r}")
    step = int(step)
    return [step] * (horizon // step) + ([horizon % step] if horizon % step else [])


def rolling_forecast(model, x_hist, horizon, num_samples=100, covariates=None, step=None, seed=None,
                     chunk_size=8192):
    r"""Forecast ``horizon`` steps with :func:`~pyroseq.inference.forecast`, in several steps if the model
    forecasts within a window of fixed ``length`` (:class:`~pyroseq.models.ConditionalDiffusion`,
    :class:`~pyroseq.models.LatentDiffusionSSM`: at most ``length - 1`` steps at a time).

    A longer horizon is forecast ``step`` steps at a time: every sample path is continued from its own
    draws so far (the history of the next step is the observed history followed by the path's forecast),
    so the paths are draws of the joint forecast and their spread grows with the horizon as the model's
    uncertainty compounds. Models without a window length (DKF, DDSSM) forecast any horizon at once.

    :param model: a forecasting model (see :func:`~pyroseq.inference.forecast`).
    :param torch.Tensor x_hist: histories ``(N, T, C)``; NaN marks missing entries.
    :param int horizon: number of future steps ``H``.
    :param int num_samples: number of sample paths ``S``.
    :param torch.Tensor covariates: covariates ``(N, T + H, p)`` if the model uses them.
    :param int step: steps forecast at a time by a fixed-window model when ``H >= length`` (default: the
        model's training ``horizon`` if it has one, else ``length // 2``).
    :param int seed: if given, seed the global generators first.
    :param int chunk_size: maximum number of replicated series per :class:`~pyro.infer.Predictive` call.
    :returns: samples ``(S, N, H, C)``.
    :raises ValueError: for a bad horizon, step or history.
    """
    steps = rolling_steps(model, horizon, step)
    if len(steps) == 1:
        return forecast(model, x_hist, horizon, num_samples=num_samples, covariates=covariates, seed=seed,
                        chunk_size=chunk_size)
    window, S = model.length, int(num_samples)
    N, T, C = x_hist.shape
    parts, paths = [], None
    done = 0
    for h in steps:
        if paths is None:
            cov = None if covariates is None else covariates[:, :T + h]
            out = forecast(model, x_hist, h, num_samples=S, covariates=cov, seed=seed, chunk_size=chunk_size)
            paths = x_hist[:, -window:].repeat(S, 1, 1)  # sample-major, as out.reshape(S * N, ...)
        else:
            kept = paths.shape[1]
            cov = None if covariates is None else covariates[:, T + done - kept:T + done + h].repeat(S, 1, 1)
            out = forecast(model, paths, h, num_samples=1, covariates=cov, chunk_size=chunk_size)[0]
            out = out.reshape(S, N, h, C)
        parts.append(out)
        paths = torch.cat([paths, out.reshape(S * N, h, C).to(paths.dtype)], 1)[:, -window:]
        done += h
    return torch.cat(parts, 2)


def rolling_origins(num_steps, horizon, history, stride=None):
    """Forecast origins of a backtest over a series of ``num_steps`` steps: every ``stride`` steps, the
    last one at ``num_steps - horizon`` (so the most recent steps are always scored), the first one at
    ``history`` or later.

    :param int num_steps: series length ``T``.
    :param int horizon: forecast horizon ``H``.
    :param int history: steps before an origin that the forecast conditions on.
    :param int stride: steps between origins (default ``horizon``: the forecasts tile the series).
    :returns: a sorted list of origins ``t0`` (forecasts cover ``t0, ..., t0 + H - 1``).
    :raises ValueError: if the series is too short for one origin.
    """
    stride = horizon if stride is None else stride
    for name, value in (("horizon", horizon), ("history", history), ("stride", stride)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    last = int(num_steps) - int(horizon)
    if last < history:
        raise ValueError(f"a series of {num_steps} steps is too short for a history of {history} and a horizon of "
                         f"{horizon} (needs at least {history + horizon} steps)")
    return list(range(last, int(history) - 1, -int(stride)))[::-1]


def _quantile(samples, q):
    return np.quantile(samples, q, axis=0)


def _coverage(lo, hi, truth):
    observed = np.isfinite(truth)
    hit = (truth >= lo) & (truth <= hi) & observed
    return hit, observed


def _energy(samples, truth):
    """Mean energy score of the rows of ``truth`` ``(O, D)`` without a missing entry (NaN if none)."""
    from ..metrics import energy_score

    complete = np.isfinite(truth).all(-1)
    if not complete.any():
        return math.nan
    return energy_score(torch.from_numpy(samples[:, complete]), torch.from_numpy(truth[complete])).item()


def _crps(samples, truth):
    """Elementwise CRPS, NaN where ``truth`` is missing."""
    from pyro.ops.stats import crps_empirical

    observed = np.isfinite(truth)
    scores = crps_empirical(torch.from_numpy(samples), torch.from_numpy(np.where(observed, truth, 0.0))).numpy()
    return np.where(observed, scores, np.nan)


def _mean(values, weights):
    total = weights.sum()
    return float(values[weights].mean()) if total else math.nan


def forecast_scores(samples, truth):
    """Scores of forecasts ``samples`` ``(S, N, H, C)`` against ``truth`` ``(N, H, C)`` (NaN = missing,
    left out): per horizon step and over the whole horizon.

    - ``crps``: mean CRPS of the observed entries (:func:`pyro.ops.stats.crps_empirical`);
    - ``energy_score``: per step, the energy score of the ``C``-vector of that step; over the whole horizon,
      of the ``H x C`` vector (:func:`pyro.ops.stats.energy_score_empirical`), each over the series whose
      vector is complete;
    - ``coverage_50``, ``coverage_90``: fraction of observed entries inside the central 50% / 90%
      intervals of the samples;
    - ``mae``: mean absolute error of the per-entry median.

    :param samples: forecast samples ``(S, N, H, C)`` (tensor or array).
    :param truth: what happened, ``(N, H, C)``.
    :returns: ``(per_step, overall)``: a dict metric -> float64 array ``(H,)`` and a dict metric -> float
        (NaN where nothing could be scored).
    :raises ValueError: for mismatched shapes or non-finite samples.
    """
    samples = np.asarray(samples.detach().cpu() if torch.is_tensor(samples) else samples, dtype=np.float64)
    truth = np.asarray(truth.detach().cpu() if torch.is_tensor(truth) else truth, dtype=np.float64)
    if samples.ndim != 4 or samples.shape[1:] != truth.shape:
        raise ValueError(f"samples must have shape (S, N, H, C) and truth (N, H, C), got {samples.shape} and "
                         f"{truth.shape}")
    if not np.isfinite(samples).all():
        raise ValueError("samples contain NaN or infinite values")
    H = truth.shape[1]
    crps = _crps(samples, truth)
    observed = np.isfinite(truth)
    median = _quantile(samples, 0.5)
    error = np.abs(median - np.where(observed, truth, 0.0))
    hits = {}
    for level in (50, 90):
        lo, hi = _quantile(samples, [(1 - level / 100) / 2, (1 + level / 100) / 2])
        hits[level] = _coverage(lo, hi, truth)[0]
    per_step = {name: np.full(H, np.nan) for name in METRICS}
    for h in range(H):
        seen = observed[:, h]
        per_step["crps"][h] = _mean(crps[:, h], seen)
        per_step["energy_score"][h] = _energy(samples[:, :, h], truth[:, h])
        per_step["coverage_50"][h] = _mean(hits[50][:, h], seen)
        per_step["coverage_90"][h] = _mean(hits[90][:, h], seen)
        per_step["mae"][h] = _mean(error[:, h], seen)
    N = truth.shape[0]
    overall = {
        "crps": _mean(crps, observed),
        "energy_score": _energy(samples.reshape(samples.shape[0], N, -1), truth.reshape(N, -1)),
        "coverage_50": _mean(hits[50], observed),
        "coverage_90": _mean(hits[90], observed),
        "mae": _mean(error, observed),
    }
    return per_step, overall


class BacktestResult:
    """Forecasts from rolling origins and their scores (returned by :func:`backtest`).

    :ivar torch.Tensor samples: forecasts ``(S, O, H, C)``, one per origin.
    :ivar torch.Tensor truth: what happened, ``(O, H, C)`` (NaN = missing).
    :ivar list origins: the origins ``t0`` (forecasts cover ``t0, ..., t0 + H - 1``).
    :ivar int history: steps each forecast conditioned on.
    :ivar dict per_step: metric -> float64 array ``(H,)`` (see :func:`forecast_scores`).
    :ivar dict overall: metric -> float over the whole horizon.
    :ivar tuple columns: channel names (for the plot), or None.
    :ivar str units: what the scores are measured in (for the table), or None.
    :ivar torch.Tensor last_history: the history ``(1, history, C)`` of the last origin (for the plot), or None.
    """

    def __init__(self, samples, truth, origins, history, columns=None, units=None, last_history=None):
        self.samples, self.truth = samples, truth
        self.origins, self.history = list(origins), history
        self.columns, self.units, self.last_history = columns, units, last_history
        self.per_step, self.overall = forecast_scores(samples, truth)

    @property
    def horizon(self):
        return int(self.truth.shape[1])

    def table(self, steps=None):
        """The scores as a text table: one row per horizon step and one for the whole horizon.

        :param steps: horizon steps (1-based) to show (default: all of them, or about 12 evenly spaced ones
            for long horizons).
        :rtype: str
        """
        H = self.horizon
        if steps is None:
            steps = range(1, H + 1) if H <= 12 else sorted(set(np.linspace(1, H, 12).round().astype(int)))
        head = f"{'step':>6} " + " ".join(f"{name:>12}" for name in METRICS)
        lines = [f"backtest: {len(self.origins)} origins, history {self.history}, horizon {H}, "
                 f"{self.samples.shape[0]} samples" + (f"; scores in {self.units}" if self.units else ""),
                 head, "-" * len(head)]

        def row(label, values):
            return f"{label:>6} " + " ".join("nan".rjust(12) if not math.isfinite(v) else f"{v:12.4g}"
                                             for v in values)

        for h in steps:
            lines.append(row(str(h), [self.per_step[m][h - 1] for m in METRICS]))
        lines.append(row("all", [self.overall[m] for m in METRICS]))
        lines.append("lower is better, except coverage (target: 0.5 and 0.9); energy score of all steps: of the "
                     "whole H x C vector")
        return "\n".join(lines)

    def to_dict(self):
        """The scores as JSON-ready lists and floats."""
        def clean(v):
            return None if not math.isfinite(v) else float(v)

        return {"origins": self.origins, "history": self.history, "horizon": self.horizon,
                "num_samples": int(self.samples.shape[0]), "units": self.units,
                "overall": {m: clean(v) for m, v in self.overall.items()},
                "per_step": {m: [clean(v) for v in self.per_step[m]] for m in METRICS}}

    def plot(self, channel=0):
        """A figure of the scores against the horizon step (CRPS and MAE, energy score, coverage with its
        nominal levels) and the last origin's forecast fan of one channel.

        :param int channel: the channel of the fan chart.
        :returns: a :class:`matplotlib.figure.Figure`.
        """
        import matplotlib.pyplot as plt

        from .plots import plot_forecast

        steps = np.arange(1, self.horizon + 1)
        fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
        ax = axes[0, 0]
        ax.plot(steps, self.per_step["crps"], marker=".", label="CRPS")
        ax.plot(steps, self.per_step["mae"], marker=".", label="MAE of the median")
        ax.set_title("CRPS and MAE per step", fontsize=9)
        ax.legend(fontsize=8)
        ax = axes[0, 1]
        ax.plot(steps, self.per_step["energy_score"], marker=".", color="tab:purple")
        ax.set_title("energy score per step (all channels)", fontsize=9)
        ax = axes[1, 0]
        for level, color in ((50, "tab:green"), (90, "tab:orange")):
            ax.plot(steps, self.per_step[f"coverage_{level}"], marker=".", color=color, label=f"{level}% interval")
            ax.axhline(level / 100, color=color, ls="--", lw=0.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("empirical coverage per step (dashed: nominal)", fontsize=9)
        ax.legend(fontsize=8)
        for ax in axes.flat[:3]:
            ax.set_xlabel("horizon step")
        ax = axes[1, 1]
        last = len(self.origins) - 1
        context = self.last_history
        if context is None:
            context = torch.full((1, 1, self.truth.shape[-1]), math.nan)
        plot_forecast(context, torch.as_tensor(self.samples[:, last:last + 1]), truth=torch.as_tensor(
            self.truth[last:last + 1]), channel=channel, ax=ax)
        name = self.columns[channel] if self.columns else f"channel {channel}"
        ax.set_title(f"last origin (t0 = {self.origins[last]}), {name}", fontsize=9)
        fig.tight_layout()
        return fig


def backtest(model, series, horizon, history=None, origins=None, stride=None, num_samples=100, covariates=None,
             seed=0, step=None, chunk_size=8192):
    """Backtest a trained forecaster on one series from rolling origins.

    At every origin ``t0`` the model forecasts ``series[t0:t0 + H]`` from the ``history`` steps before it
    (:func:`rolling_forecast`; all origins in one batch), and the forecasts are scored per horizon step
    against what happened (:func:`forecast_scores`). Origins whose history or future holds no observed
    value are left out. The model is not refitted (train it on data before the first origin for an
    out-of-sample evaluation)::

        result = backtest(model, series, horizon=24, history=96, stride=24, num_samples=100)
        print(result.table())
        result.plot().savefig("backtest.png")

    :param model: a trained forecasting model (see :func:`~pyroseq.inference.forecast`).
    :param torch.Tensor series: the series ``(T, C)``; NaN marks missing values.
    :param int horizon: forecast horizon ``H``.
    :param int history: steps before each origin the forecast conditions on (default: the model's window
        ``length``, for the models that have one).
    :param list origins: the origins ``t0`` (default :func:`rolling_origins` with ``stride``).
    :param int stride: steps between default origins (default ``H``).
    :param int num_samples: forecast samples per origin ``S``.
    :param torch.Tensor covariates: covariates ``(T, p)`` of the series, if the model uses them (each
        forecast gets those of its history and horizon).
    :param int seed: random seed.
    :param int step: see :func:`rolling_forecast`.
    :param int chunk_size: see :func:`~pyroseq.inference.forecast`.
    :rtype: BacktestResult
    :raises ValueError: for a bad series, horizon, history or origin, or no origin left to score.
    """
    if not torch.is_tensor(series):
        series = torch.as_tensor(np.asarray(series, dtype=np.float32))
    if not torch.is_floating_point(series) or series.dim() != 2:
        raise ValueError(f"series must be a floating point tensor of shape (T, C), got "
                         f"{series.dtype} {tuple(series.shape)}")
    if torch.isinf(series).any():
        raise ValueError("series contains infinite values (use NaN for missing values)")
    if history is None:
        history = getattr(model, "length", None)
        if not isinstance(history, int):
            raise ValueError("history: give the number of steps each forecast conditions on (e.g. the length "
                             "of the training windows)")
    T = series.shape[0]
    if origins is None:
        origins = rolling_origins(T, horizon, history, stride)
    else:
        origins = [int(t) for t in origins]
        bad = [t for t in origins if not history <= t <= T - horizon]
        if bad:
            raise ValueError(f"origins must be in [history, T - horizon] = [{history}, {T - horizon}], got {bad[0]}")
    if covariates is not None and (not torch.is_tensor(covariates) or covariates.dim() != 2
                                   or covariates.shape[0] != T):
        raise ValueError(f"covariates must be a tensor of shape (T, p) = ({T}, p), got "
                         f"{tuple(covariates.shape) if torch.is_tensor(covariates) else type(covariates).__name__}")
    hist = torch.stack([series[t - history:t] for t in origins]) if origins else series.new_zeros(0, history, 1)
    truth = torch.stack([series[t:t + horizon] for t in origins]) if origins else None
    keep = [i for i in range(len(origins)) if not torch.isnan(hist[i]).all() and not torch.isnan(truth[i]).all()]
    if not keep:
        raise ValueError("no origin has both an observed history and an observed future to score")
    origins = [origins[i] for i in keep]
    hist, truth = hist[keep], truth[keep]
    cov = None if covariates is None else torch.stack([covariates[t - history:t + horizon] for t in origins])
    samples = rolling_forecast(model, hist, horizon, num_samples=num_samples, covariates=cov, step=step, seed=seed,
                               chunk_size=chunk_size)
    return BacktestResult(samples, truth, origins, history, last_history=hist[-1:])
