"""The work behind ``pyroseq fit``, ``forecast``, ``generate`` and ``evaluate`` (``impute``: see
:mod:`pyroseq.runs.impute`): each reads and writes a
:class:`~pyroseq.runs.RunDirectory`, so the steps can run in separate processes."""

import math
import signal
import threading
import time
import types
from contextlib import contextmanager

import numpy as np
import torch

from .builder import build_model
from .config import FORECASTING_MODELS, GENERATIVE_MODELS, config_differences, validate_config
from .dataset import load_run_data, unit_range
from .directory import RunDirectory
from .errors import UsageError, check_positive
from .figures import save_forecast_plot, save_generated_plot, save_loss_plot

__all__ = ["run_fit", "run_forecast", "run_generate", "run_evaluate", "load_trained", "format_metrics"]

_FIT_HINT = "run `pyroseq fit --config CONFIG --run-dir DIR` first"


def _unit_scale(data):
    """Per-channel ``(min, max)`` mapping the run's windows to ``[0, 1]`` for the generative models (None
    if they are already in ``[0, 1]``, as every min-max scaled registry data set is)."""
    if unit_range(data.train) and (data.test.numel() == 0 or unit_range(data.test)):
        return None
    flat = data.train.reshape(-1, data.obs_dim).double()
    lo, hi = flat.min(0).values, flat.max(0).values
    if (hi <= lo).any():
        raise UsageError(f"data: channels {(hi <= lo).nonzero().flatten().tolist()} are constant in the training "
                         f"windows")
    return {"min": lo.tolist(), "max": hi.tolist()}


def _to_unit(x, scale):
    if scale is None:
        return x
    lo, hi = torch.tensor(scale["min"], dtype=x.dtype), torch.tensor(scale["max"], dtype=x.dtype)
    return ((x - lo) / (hi - lo)).clamp(0, 1)


def run_fit(run_dir, config=None, num_steps=None, progress=True, log=print):
    """Train the model of a run (``pyroseq fit``), resuming from the run's checkpoint if there is one.

    :param str run_dir: the run directory (created if needed).
    :param dict config: a configuration (validated here); None to continue the run stored in ``run_dir``.
    :param int num_steps: overrides ``train.num_steps`` (e.g. to continue training a finished run).
    :param bool progress: show a progress bar.
    :param callable log: printer of messages.
    :returns: a dict with ``config``, ``losses``, ``model`` and the written ``paths``.
    :raises ValueError: for an invalid configuration, or one that differs from the run's stored one.
    :raises FileNotFoundError: if ``config`` is None and ``run_dir`` holds no run.
    """
    run = RunDirectory(run_dir)
    if config is None:
        config = validate_config(run.read_json("config", "no config stored there; give --config"))
    else:
        config = validate_config(config)
        if run.exists("config"):
            diff = config_differences(validate_config(run.read_json("config")), config)
            if diff:
                raise UsageError(f"run directory {run.path} holds a run with a different config (differs in "
                                 f"{', '.join(diff)}); use a new --run-dir or remove the old one")
    if num_steps is not None:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
            raise UsageError(f"num_steps must be a non-negative integer, got {num_steps!r}")
        config["train"]["num_steps"] = num_steps
    train = config["train"]
    torch.set_num_threads(train["threads"])
    data = _run_data(config, log=log)
    scale = _unit_scale(data) if config["model"] in GENERATIVE_MODELS else None
    model = build_model(config, data.obs_dim, data.length, data.covariate_dim)
    run.write_json("config", config)
    run.write_json("data", {"name": data.name, "columns": list(data.columns), "obs_dim": data.obs_dim,
                            "length": data.length, "num_train": len(data.train), "num_test": len(data.test),
                            "independent": data.independent, "scale": scale, "units": data.units,
                            "calendar": config["data"]["calendar"], "covariate_dim": data.covariate_dim})
    x = data.train  # every model takes data in their own units and scales them itself
    log(f"training {config['model']} on {tuple(x.shape)} windows of {data.name!r} for {train['num_steps']} steps "
        f"({sum(p.numel() for p in model.parameters() if p.requires_grad):,} parameters)")
    from ..inference import NonFiniteError, fit

    fit_kwargs = {k: train[k] for k in ("lr_decay", "clip_norm", "lrs") if k in train}  # ema_decay: the model's
    if "kl_schedule" in train:
        fit_kwargs["kl_schedule"] = tuple(train["kl_schedule"])
    previous = []  # the loss history stored in the checkpoint: its length is the step the fit resumes from
    if run.exists("checkpoint"):
        from ..inference import load_checkpoint

        previous = list(load_checkpoint(run.checkpoint, required=("losses",))["losses"])
        log(f"resuming from step {len(previous)} of {run.checkpoint}"
            + (f" (already trained for {train['num_steps']} steps; give --num-steps to train longer)"
               if len(previous) >= train["num_steps"] else f"; training to step {train['num_steps']}"))
    recorded = []
    start = time.perf_counter()
    with _stop_between_steps(log) as stop:
        def record(step, loss):
            recorded.append(loss)
            if stop.requested:
                raise KeyboardInterrupt

        try:
            losses = fit(model, x, num_steps=train["num_steps"], batch_size=train["batch_size"], seed=train["seed"],
                         lr=train["lr"], checkpoint=run.checkpoint, checkpoint_every=train["checkpoint_every"],
                         progress=progress, callback=record, covariates=data.train_covariates, **fit_kwargs)
        except TypeError as e:  # e.g. a wrongly typed kl_schedule entry
            raise UsageError(f"config: bad train settings: {e}") from None
        except (KeyboardInterrupt, NonFiniteError) as e:
            losses = previous + recorded
            run.write_json("losses", {"losses": losses, "stopped_at_step": len(losses)})
            every = train["checkpoint_every"]
            saved = max(len(previous), (len(losses) // every) * every)  # the step of the last checkpoint written
            log(f"{'interrupted' if isinstance(e, KeyboardInterrupt) else 'stopped'} after step {len(losses)}: wrote "
                f"{run.losses}; {run.checkpoint} holds step {saved} (`pyroseq fit --run-dir {run.path}` continues "
                f"from there)")
            raise
    seconds = time.perf_counter() - start
    run.write_json("losses", {"losses": losses})
    save_loss_plot(losses, run.loss_plot, title=f"{config['model']} on {data.name}: training loss")
    tail = losses[-min(100, len(losses)):] if losses else [math.nan]
    log(f"done in {seconds:.0f} s; mean loss of the last {len(tail)} steps {sum(tail) / len(tail):.4g}")
    return {"config": config, "losses": losses, "model": model,
            "paths": [run.config, run.data, run.checkpoint, run.losses, run.loss_plot]}


@contextmanager
def _stop_between_steps(log):
    """While training in the main thread, a first Ctrl-C (SIGINT) asks to stop after the current step, so
    that the loss history ends on a completed step; a second one interrupts at once."""
    stop = types.SimpleNamespace(requested=False)
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        log("\ninterrupt: stopping after this step (Ctrl-C again to stop at once)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_data(config, log=None):
    """The run's windows; complete windows only for the models that cannot train on missing values."""
    return load_run_data(config["data"], complete=config["model"] in GENERATIVE_MODELS, log=log)


def load_trained(run_dir):
    """The configuration, data summary and trained model of a run directory.

    :returns: ``(config, data_info, model)`` with the model in eval mode.
    :raises FileNotFoundError: if the run has no config or no checkpoint.
    """
    from ..inference import load_checkpoint

    run = RunDirectory(run_dir)
    config = validate_config(run.read_json("config", _FIT_HINT))
    info = run.read_json("data", _FIT_HINT)
    model = build_model(config, info["obs_dim"], info["length"], info.get("covariate_dim", 0))
    state = load_checkpoint(run.require("checkpoint", _FIT_HINT))
    model.load_state_dict(state["model"])
    if "scaler.low" in model.state_dict() and "scaler.low" not in state["model"]:  # saved before range scalers
        _legacy_generative_scaling(model, info.get("scale"))
    model.eval()
    torch.set_num_threads(config["train"]["threads"])
    return config, info, model


@torch.no_grad()
def _legacy_generative_scaling(model, scale):
    """Runs trained before the models scaled their own data fed DiM-TS the windows mapped to ``[0, 1]`` (its
    ``data_range``) and Stage-Diff the same mapped to ``[-1, 1]``, by the run's per-channel ``scale`` (None: the
    data were in ``[0, 1]`` already). Both amount to the range map of ``model.scaler`` with that scale, which is
    set here so the model takes and returns data units like a new run."""
    model.scaler.low.copy_(torch.zeros(model.obs_dim) if scale is None else torch.tensor(scale["min"]))
    model.scaler.high.copy_(torch.ones(model.obs_dim) if scale is None else torch.tensor(scale["max"]))


def run_forecast(run_dir, horizon=None, num_samples=None, max_series=None, seed=0, log=print):
    """Forecast the held-out windows of a run (``pyroseq forecast``): the first ``T - H`` steps of every
    held-out window are the history, the last ``H`` the realised future. Writes ``forecast.npz``
    (``samples`` (S, N, H, C), ``history`` (N, T - H, C), ``truth`` (N, H, C)) and a fan chart.

    :param str run_dir: a trained run.
    :param int horizon: forecast horizon ``H`` (default ``forecast.horizon`` of the config).
    :param int num_samples: samples per series ``S`` (default ``forecast.num_samples``).
    :param int max_series: number of held-out windows forecast (default ``forecast.max_series``).
    :param int seed: random seed.
    :returns: a dict with ``samples``, ``history``, ``truth`` and ``paths``.
    :raises ValueError: for a generative model (it does not forecast) or a bad horizon.
    """
    from ..inference import forecast

    config, info, model = load_trained(run_dir)
    if config["model"] not in FORECASTING_MODELS:
        raise UsageError(f"model {config['model']!r} generates whole windows and does not forecast; use "
                         f"`pyroseq generate` (forecasting models: {', '.join(FORECASTING_MODELS)})")
    settings = {key: check_positive(key, value, config["forecast"][key])
                for key, value in (("horizon", horizon), ("num_samples", num_samples), ("max_series", max_series))}
    H, T = settings["horizon"], info["length"]
    if H >= T:
        raise UsageError(f"horizon must be smaller than the window length {T} (the history is the first T - H "
                         f"steps of each held-out window), got {H}")
    data = _run_data(config)  # the held-out windows and their covariates (the training ones if there are none)
    windows, covariates = (data.test, data.test_covariates) if len(data.test) else (data.train, data.train_covariates)
    windows = windows[:settings["max_series"]]
    covariates = None if covariates is None else covariates[:settings["max_series"]]
    history, truth = windows[:, : T - H], windows[:, T - H:]
    log(f"forecasting {len(windows)} held-out series: history {T - H} steps, horizon {H}, "
        f"{settings['num_samples']} samples each")
    samples = forecast(model, history, H, num_samples=settings["num_samples"], covariates=covariates, seed=seed)
    run = RunDirectory(run_dir)
    np.savez_compressed(run.forecast, samples=samples.numpy(), history=history.numpy(), truth=truth.numpy(),
                        horizon=H, seed=seed)
    save_forecast_plot(history, samples, truth, run.forecast_plot)
    return {"samples": samples, "history": history, "truth": truth, "paths": [run.forecast, run.forecast_plot]}


def _generate(config, info, model, num_samples, length, seed, progress=False):
    """Generate windows in data units, in chunks, and in ``[0, 1]`` (by the run's scale) for the generative
    models' scores."""
    from tqdm.auto import tqdm

    chunk = 256
    parts = []
    try:
        for i, start in enumerate(tqdm(range(0, num_samples, chunk), disable=not progress, desc="generate",
                                       leave=False)):
            n = min(chunk, num_samples - start)
            parts.append(model.generate(n, length, seed=seed * 100003 + i).float())
    except ValueError as e:  # e.g. a conditional model trained with observation planes, a window too long
        raise UsageError(f"model {config['model']!r} cannot generate these windows: {e}") from None
    samples = torch.cat(parts)
    return samples, _to_unit(samples, info.get("scale")) if config["model"] in GENERATIVE_MODELS else None


def run_generate(run_dir, num_samples=None, length=None, seed=0, progress=True, log=print):
    """Sample new windows from a trained run (``pyroseq generate``); writes ``generated.npz``
    (``samples`` (n, L, C) in data units) and a picture of real and generated windows. Works for every
    model but ``"conditional"`` trained with observation planes (DKF/DDSSM/LatentDiffusionSSM sample from
    their prior); made for DiM-TS and Stage-Diff.

    :param str run_dir: a trained run.
    :param int num_samples: number of windows ``n`` (default ``generate.num_samples``).
    :param int length: window length ``L`` (default ``generate.length`` or the training length; DiM-TS at
        most its training length, Stage-Diff any).
    :param int seed: random seed.
    :returns: a dict with ``samples`` and ``paths``.
    """
    config, info, model = load_trained(run_dir)
    if info.get("covariate_dim"):
        raise UsageError(f"model {config['model']!r} trained with calendar covariates (data.calendar) forecasts and "
                         f"imputes but does not generate windows; use `pyroseq forecast` (or train it without "
                         f"data.calendar)")
    n = check_positive("num_samples", num_samples, config["generate"]["num_samples"])
    L = check_positive("length", length, config["generate"]["length"] or info["length"])
    log(f"generating {n} windows of length {L} with {config['model']}")
    start = time.perf_counter()
    samples, _ = _generate(config, info, model, n, L, seed, progress=progress)
    log(f"done in {time.perf_counter() - start:.1f} s")
    run = RunDirectory(run_dir)
    np.savez_compressed(run.generated, samples=samples.numpy(), seed=seed)
    real = _run_data(config).train
    save_generated_plot(real, samples, run.generated_plot, columns=info.get("columns"))
    return {"samples": samples, "paths": [run.generated, run.generated_plot]}


def _finite(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _forecast_scores(samples, truth):
    """Scores of the held-out forecasts (missing values of ``truth`` left out)."""
    from ..inference.backtesting import forecast_scores

    per_step, overall = forecast_scores(samples, truth)
    scores = {"crps": overall["crps"], "crps_1": per_step["crps"][0], "energy_score": overall["energy_score"],
              "energy_score_1": per_step["energy_score"][0], "coverage_50": overall["coverage_50"],
              "coverage_90": overall["coverage_90"]}
    return {k: {"mean": _finite(v), "ci": None, "values": [_finite(v)]} for k, v in scores.items()}


def run_evaluate(run_dir, seed=None, progress=True, log=print):
    """Score a trained run (``pyroseq evaluate``) and write ``metrics.json``.

    - Forecasting models (DKF, DDSSM, ConditionalDiffusion, LatentDiffusionSSM): CRPS and energy score of
      the whole horizon and of the first step,
      and the empirical coverage of the central 50% and 90% intervals, on the held-out windows
      (``forecast.npz`` if ``pyroseq forecast`` wrote one, else new forecasts with the config's settings).
    - Generative models (DiM-TS, Stage-Diff): the metrics of ``evaluate.metrics`` (context-FID,
      correlational, discriminative, predictive; ``evaluate.repeats`` repeats with the config's small
      iteration counts) between ``evaluate.max_real`` real windows and the generated ones (``generated.npz``
      if it holds windows of the training length, else ``evaluate.num_samples`` new ones), in ``[0, 1]``.

    :param str run_dir: a trained run.
    :param int seed: seed of the metrics (default ``evaluate.seed``).
    :param bool progress: show a progress bar over the metrics.
    :returns: the dict written to ``metrics.json``.
    """
    config, info, model = load_trained(run_dir)
    run = RunDirectory(run_dir)
    settings = config["evaluate"]
    seed = settings["seed"] if seed is None else seed
    result = {"model": config["model"], "data": info["name"], "length": info["length"]}
    if config["model"] in FORECASTING_MODELS:
        if run.exists("forecast"):
            with np.load(run.forecast) as f:
                samples, truth = torch.from_numpy(f["samples"]), torch.from_numpy(f["truth"])
            result["source"] = "forecast.npz"
        else:
            out = run_forecast(run_dir, seed=seed, log=log)
            samples, truth = out["samples"], out["truth"]
            result["source"] = "new forecasts"
        log(f"scoring {samples.shape[0]} forecast samples of {samples.shape[1]} held-out series, horizon "
            f"{samples.shape[2]}")
        result["horizon"] = int(samples.shape[2])
        result["metrics"] = _forecast_scores(samples.double(), truth.double())
    else:
        from .. import metrics

        data, fake = _run_data(config), None
        if run.exists("generated"):
            with np.load(run.generated) as f:
                fake = torch.from_numpy(f["samples"]).float()
            fake = _to_unit(fake, info.get("scale")) if fake.shape[1] == info["length"] and len(fake) >= 2 else None
        result["source"] = "generated.npz" if fake is not None else "new samples"
        if fake is None:
            log(f"generating {settings['num_samples']} windows of length {info['length']}")
            _, fake = _generate(config, info, model, settings["num_samples"], info["length"], seed, progress)
        real = _to_unit(data.all, info.get("scale"))
        if len(real) > settings["max_real"]:
            index = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[: settings["max_real"]]
            real = real[index]
        log(f"scoring {len(fake)} generated against {len(real)} real windows ({settings['repeats']} repeat(s))")
        scorers = {"context_fid": (metrics.context_fid, "ts2vec_iterations"),  # the score, its iterations
                   "correlational": (metrics.correlational_score, None),
                   "discriminative": (metrics.discriminative_score, "disc_iterations"),
                   "predictive": (metrics.predictive_score, "pred_iterations")}
        from tqdm.auto import tqdm

        result["metrics"] = {}
        skipped = [m for m in settings["metrics"] if info["obs_dim"] < 2 and m in ("correlational", "predictive")]
        if skipped:
            log(f"skipping {', '.join(skipped)}: they need at least two channels")
        names = [m for m in settings["metrics"] if m not in skipped]
        for name in tqdm(names, disable=not progress, desc="evaluate", leave=False):
            start = time.perf_counter()
            scorer, iterations = scorers[name]
            score = scorer(real, fake, repeats=settings["repeats"], seed=seed,
                           **({} if iterations is None else {"iterations": settings[iterations]}))
            result["metrics"][name] = {"mean": _finite(score.mean), "ci": _finite(score.ci),
                                       "values": [_finite(v) for v in score.values],
                                       "seconds": time.perf_counter() - start}
    run.write_json("metrics", result)
    result["path"] = run.metrics
    return result


def format_metrics(result):
    """The scores of :func:`run_evaluate` as a text table."""
    lines = [f"{result['model']} on {result['data']} (length {result['length']}; {result.get('source', '')})",
             f"{'metric':<16} {'value':>10} {'95% CI':>9}"]
    lines.append("-" * len(lines[-1]))
    for name, m in result["metrics"].items():
        ci = "" if m["ci"] is None else f"{m['ci']:.3g}"
        value = "nan" if m["mean"] is None else f"{m['mean']:.4g}"
        lines.append(f"{name:<16} {value:>10} {ci:>9}")
    lines.append("lower is better, except coverage (target: its nominal level)" if "crps" in result["metrics"]
                 else "lower is better for every score")
    return "\n".join(lines)
