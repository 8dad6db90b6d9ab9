"""Probabilistic forecasting on real data: pyroseq's models against the forecasters a user would pick instead.

Protocol (ETTh1 by default; any CSV with ``--data``): the last 20% of the series is the test part; forecast
origins every ``--stride`` steps across it; each model sees ``--history`` steps and forecasts ``--horizon`` steps
with ``--samples`` samples per origin. Defaults follow the frequency (inferred from the date column): hourly data
96 / 24 / stride 48 (73 origins on ETTh1), business days 60 / 5 / stride 5, and so on (see
``etth_tasks.protocol_defaults``). Scores in standardised units (per channel, training statistics), every row
computed the same way from its samples:

- CRPS (``pyroseq.metrics.crps``, mean over entries), energy score over each ``horizon x channels`` forecast
  and MAE of the sample median;
- calibration: coverage of the central 50% and 90% intervals of the samples, and a PIT histogram per model
  (randomised ranks of the observation among the samples; ``pit.png``);
- cost: training CPU minutes (one thread) and forecast CPU seconds per origin (all samples of all channels).

pyroseq models (all trained with :func:`pyroseq.inference.fit` under the same CPU-time budget, one thread, with
two calendar cycles as covariates): DKF, DDSSM, the latent-diffusion SSM, conditional DiM-TS, conditional
Stage-Diff, optionally conditional CSDI-style. Peers (``benchmarks/peers.py``): seasonal naive, statsforecast
MSTL / AutoETS / AutoARIMA (Gaussian predictive marginals sampled) and GluonTS DeepAR (trained under the same
budget); their packages come with ``pip install -e '.[bench]'``, and a missing one skips its row.

The table closes with a paired bootstrap over origins of the CRPS of the best pyroseq model against the best
peer (95% intervals of the difference and of the ratio).

Commands::

    python benchmarks/forecasting.py --quick                             # smoke run (minutes)
    nohup python benchmarks/forecasting.py > forecasting.log 2>&1 &      # ETTh1 (resumable)
    python benchmarks/forecasting.py --data stocks --out benchmarks/results/forecasting/stocks
    python benchmarks/forecasting.py --data my.csv --models seasonal_naive,autoets,dkf --budget-minutes 5 --out DIR
    python benchmarks/forecasting.py --report [--out DIR]                 # tables of finished cells

Every row writes ``DIR/<model>.json``, so an interrupted run resumes where it stopped; ``DIR/summary.json``
(``{model: {"crps", "energy_score", "mae", "coverage_50", "coverage_90", "train_cpu_minutes",
"forecast_cpu_seconds_per_origin", ...}}``) and ``DIR/summary.md`` are rewritten after each row. Trained weights
and forecast samples go to the ignored cache ``benchmarks/.cache/forecasting/<data>_<history>_<horizon>/``.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import fill_defaults, log, read_json, write_json  # noqa: E402
from etth_tasks import CACHE, MODELS, load_task, protocol_defaults, trained_model  # noqa: E402
from peers import LONGER_HISTORY, PEERS, PeerUnavailable, run_peer  # noqa: E402

from pyroseq import metrics  # noqa: E402
from pyroseq.inference import forecast  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_MODELS = ("seasonal_naive,mstl,mstl_multi,autoets,deepar,deepar_long,autoarima,"
                  "dkf,ddssm,cond_stagediff,cond_dimts,latent_diffusion")
PIT_BINS = 10
PLOT_ORIGINS = 4  # forecast samples of the first origins kept for the fan charts


def origins(task, args):
    """Forecast origins ``t0`` (first forecast step) in the test part."""
    start = max(task["split"], args.history)
    return list(range(start, len(task["z"]) - args.horizon + 1, args.stride))


def test_batch(task, args):
    """``(history (N, L, C), covariates (N, L + H, 4), future (N, H, C))`` at every origin."""
    z, u, L, H = task["z"], task["u"], args.history, args.horizon
    t0 = origins(task, args)
    hist = torch.stack([z[t - L:t] for t in t0])
    cov = torch.stack([u[t - L:t + H] for t in t0])
    future = torch.stack([z[t:t + H] for t in t0])
    return hist, cov, future


def scores(samples, future, seed=0):
    """Scores of ``samples`` ``(S, N, H, C)`` against ``future`` ``(N, H, C)``: CRPS (and per origin), energy
    score, MAE of the sample median and, for more than one sample, 50%/90% interval coverage and the PIT
    histogram (fractions in ``PIT_BINS`` equal bins)."""
    S = len(samples)
    crps = metrics.crps(samples, future, reduce=False)
    if S > 1:
        energy = metrics.energy_score(samples, future, reduce=False)
    else:
        energy = (samples[0] - future).flatten(1).norm(dim=1)
    median = samples.median(0).values
    out = dict(crps=float(crps.mean()), energy_score=float(energy.mean()), mae=float((median - future).abs().mean()),
               coverage_50=None, coverage_90=None, pit_histogram=None)
    if S > 1:
        q = torch.quantile(samples, torch.tensor([0.05, 0.25, 0.75, 0.95]), dim=0)
        out["coverage_50"] = float(((future >= q[1]) & (future <= q[2])).float().mean())
        out["coverage_90"] = float(((future >= q[0]) & (future <= q[3])).float().mean())
        g = torch.Generator().manual_seed(seed)
        below, ties = (samples < future).sum(0), (samples == future).sum(0)
        pit = (below + torch.rand(future.shape, generator=g) * (ties + 1)) / (S + 1)
        out["pit_histogram"] = [round(float(v), 5) for v in torch.histc(pit, PIT_BINS, 0, 1) / pit.numel()]
    out["crps_per_origin"] = [round(float(v), 6) for v in crps.mean((1, 2))]
    return out


def calibrated_coverage(num_samples, num=20000, seed=0):
    """Expected 50% and 90% coverage of the sample intervals of a perfectly calibrated forecast with
    ``num_samples`` samples (below nominal: the quantiles of a few draws are narrower than the distribution's)."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(num_samples, num, generator=g), torch.randn(num, generator=g)
    q = torch.quantile(x, torch.tensor([0.05, 0.25, 0.75, 0.95]), dim=0)
    return float(((y >= q[1]) & (y <= q[2])).float().mean()), float(((y >= q[0]) & (y <= q[3])).float().mean())


def cell_done(cell):
    return cell is not None and "coverage_90" in cell and "crps_per_origin" in cell


def pyroseq_samples(name, task, args):
    hist, cov, _ = test_batch(task, args)
    model, meta = trained_model(name, task, Path(args.cache) / "models", args.budget_minutes,
                                batch_size=args.batch_size, lr=args.lr, seed=args.seed, quick=args.quick,
                                history=args.history, horizon=args.horizon, seasonal_lag=args.seasonal_lag)
    log(f"{name}: forecasting {len(hist)} origins x {args.samples} samples")
    t = time.process_time()
    samples = forecast(model, hist, args.horizon, num_samples=args.samples, covariates=cov, seed=args.seed,
                       chunk_size=args.chunk_size)
    return samples, time.process_time() - t, dict(train=meta)


def evaluate(name, task, args):
    path = Path(args.out) / f"{name}.json"
    cell = read_json(path)
    if cell_done(cell):
        return cell
    _, _, future = test_batch(task, args)
    t0 = origins(task, args)
    try:
        if name in PEERS:
            samples, cpu, info = run_peer(name, task, t0, args.history, args.horizon, args.seasons, args.samples,
                                          args.budget_minutes, args.cache, seed=args.seed, quick=args.quick)
        else:
            samples, cpu, info = pyroseq_samples(name, task, args)
    except PeerUnavailable as e:
        log(f"{name}: skipped: {e}")
        write_json(path, dict(model=name, skipped=str(e)))
        return None
    train = info.pop("train", None) or (cell or {}).get("train")
    cell = dict(model=name, kind="peer" if name in PEERS else "pyroseq", **scores(samples, future, args.seed),
                origins=len(t0), samples=len(samples), forecast_cpu_seconds=cpu,
                forecast_cpu_seconds_per_origin=cpu / len(t0),
                train_cpu_minutes=(train["cpu_seconds"] / 60 if train else 0.0), train=train, **info)
    plots = Path(args.cache) / "samples"
    plots.mkdir(parents=True, exist_ok=True)
    torch.save(samples[:, :PLOT_ORIGINS].clone(), plots / f"{name}.pt")
    write_json(path, cell)
    cov = "" if cell["coverage_90"] is None else f", cover 50/90 {cell['coverage_50']:.2f}/{cell['coverage_90']:.2f}"
    log(f"{name}: CRPS {cell['crps']:.4f}, ES {cell['energy_score']:.3f}, MAE {cell['mae']:.4f}{cov} "
        f"({cpu:.1f} CPU s to forecast)")
    return cell


def paired_bootstrap(a, b, num=10000, seed=0):
    """95% intervals of ``mean(a) - mean(b)`` and ``mean(a) / mean(b)`` resampling origins in pairs."""
    a, b = np.asarray(a), np.asarray(b)
    idx = np.random.default_rng(seed).integers(0, len(a), size=(num, len(a)))
    ma, mb = a[idx].mean(1), b[idx].mean(1)
    return dict(diff=float(a.mean() - b.mean()), diff_ci=[float(v) for v in np.percentile(ma - mb, [2.5, 97.5])],
                ratio=float(a.mean() / b.mean()), ratio_ci=[float(v) for v in np.percentile(ma / mb, [2.5, 97.5])],
                wins=float((a < b).mean()), resamples=num)


def _fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def report(args, task=None):
    out = Path(args.out)
    names = [n for n in [*PEERS, *MODELS] if (out / f"{n}.json").exists()]
    cells = {n: read_json(out / f"{n}.json") for n in names}
    skipped = {n: c["skipped"] for n, c in cells.items() if "skipped" in c}
    cells = {n: c for n, c in cells.items() if cell_done(c)}
    keys = ("crps", "energy_score", "mae", "coverage_50", "coverage_90", "train_cpu_minutes",
            "forecast_cpu_seconds_per_origin", "origins", "samples", "kind", "pit_histogram")
    summary = {n: {k: c.get(k) for k in keys} for n, c in cells.items()}
    for n, c in cells.items():
        summary[n]["train_steps"] = (c.get("train") or {}).get("steps")
    peers = {n: c for n, c in cells.items() if n in PEERS}
    ours = {n: c for n, c in cells.items() if n in MODELS}
    best_peer = min(peers, key=lambda n: peers[n]["crps"]) if peers else None
    best_ours = min(ours, key=lambda n: ours[n]["crps"]) if ours else None
    meta = read_json(out / "protocol.json") or {}
    title = meta.get("data", "ETTh1")
    lines = [f"## Forecasting {title} (history {meta.get('history', '?')}, horizon {meta.get('horizon', '?')}, "
             f"last 20% as test; standardised units)", "",
             "| model | CRPS | energy score | MAE | 50% cover | 90% cover | CRPS / best peer | training | "
             "forecast CPU s / origin |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n, c in cells.items():
        rel = c["crps"] / peers[best_peer]["crps"] if best_peer else None
        train = c.get("train")
        trained = f"{train['steps']} steps, {train['cpu_seconds'] / 60:.1f} CPU min" if train else "fitted per origin"
        if n == "seasonal_naive":
            trained = "-"
        label = PEERS.get(n) or MODELS[n]
        bold = "**" if n in (best_peer, best_ours) else ""
        lines.append(f"| {bold}{label}{bold} | {c['crps']:.4f} | {c['energy_score']:.3f} | {c['mae']:.4f} | "
                     f"{_fmt(c['coverage_50'])} | {_fmt(c['coverage_90'])} | {_fmt(rel, '.3f')} | {trained} | "
                     f"{c['forecast_cpu_seconds_per_origin']:.3g} |")
    any_cell = next(iter(cells.values()), None)
    if any_cell:
        multi = f" (MSTL with all seasons on {4 * max(args.seasons)} steps)" if "mstl_multi" in cells else ""
        lines += ["", f"{any_cell['origins']} forecast origins every {meta.get('stride', '?')} steps "
                      f"({meta.get('freq', '?')}); {args.samples} samples per origin (seasonal naive: its point "
                      f"forecast, so its CRPS is its MAE and it has no intervals); training budget "
                      f"{meta.get('budget_minutes', args.budget_minutes)} CPU min of one thread for the pyroseq "
                      f"models and DeepAR. statsforecast rows: Gaussian predictive marginals (point forecast, "
                      f"sigma from the 90% interval) sampled independently per step and channel; fitted at every "
                      f"origin on the history window{multi}, so their fitting is their forecast cost. DeepAR gets "
                      f"each channel's series from its first "
                      f"step; `deepar` reads the last {meta.get('history', '?')} steps (lags up to half of them), "
                      f"`deepar_long` GluonTS's default lags on top (a longer history than the protocol's)."]
    shift = max((abs(v) for v in meta.get("test_mean", [])), default=0.0)
    if any_cell and shift > 1:
        lines += ["", f"The test part lies outside the training range: its mean is up to {shift:.1f} training standard "
                      f"deviations from the training mean (per channel: {meta['test_mean']}). Models that standardise "
                      f"with global training statistics must extrapolate; local models and DeepAR (mean scaling of "
                      f"each context window) do not."]
    if any_cell and args.samples > 1:
        c50, c90 = calibrated_coverage(args.samples)
        lines += ["", f"Coverage is that of the central 50% and 90% intervals of the {args.samples} samples: a "
                      f"perfectly calibrated forecast scores {c50:.2f} and {c90:.2f} in expectation (the quantiles of "
                      f"{args.samples} draws are narrower than the distribution's), so read the columns against "
                      f"those figures; the PIT histograms (pit.png) use randomised ranks and are flat when "
                      f"calibrated."]
    if best_peer and best_ours:
        window = {n: c for n, c in peers.items() if n not in LONGER_HISTORY}
        best_window = min(window, key=lambda n: window[n]["crps"]) if window else None
        lines += ["", "## Best pyroseq model against the best peer (paired bootstrap over origins)", ""]
        for key, peer in (("_bootstrap", best_peer), ("_bootstrap_window", best_window)):
            if peer is None or (key == "_bootstrap_window" and peer == best_peer):
                continue
            a, b = ours[best_ours]["crps_per_origin"], peers[peer]["crps_per_origin"]
            if len(a) != len(b):
                continue
            bs = paired_bootstrap(a, b)
            summary[key] = dict(pyroseq=best_ours, peer=peer, **bs)
            which = "best peer" if key == "_bootstrap" else "best peer reading only the history window"
            lines.append(f"- {which}: {best_ours} CRPS {ours[best_ours]['crps']:.4f} vs {peer} "
                         f"{peers[peer]['crps']:.4f}: difference {bs['diff']:+.4f} (95% interval "
                         f"{bs['diff_ci'][0]:+.4f} to {bs['diff_ci'][1]:+.4f}), ratio {bs['ratio']:.3f} "
                         f"({bs['ratio_ci'][0]:.3f} to {bs['ratio_ci'][1]:.3f}); {best_ours} is better at "
                         f"{100 * bs['wins']:.0f}% of the {len(a)} origins ({bs['resamples']} resamples).")
    if skipped:
        lines += ["", "Skipped rows:"] + [f"- {n}: {msg}" for n, msg in skipped.items()]
    text = "\n".join(lines)
    print(text)
    (out / "summary.md").write_text(text + "\n")
    write_json(out / "summary.json", summary)
    plot_pit(out, cells)
    plot_forecasts(args, cells, task)


def plot_pit(out, cells):
    """PIT histograms, one panel per model with samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, c in cells.items() if c.get("pit_histogram")]
    if not names:
        return
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.0 * rows), squeeze=False, sharey=True)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    edges = np.linspace(0, 1, PIT_BINS + 1)
    for ax, n in zip(axes.flat, names):
        c = cells[n]
        ax.bar(edges[:-1], np.asarray(c["pit_histogram"]) * PIT_BINS, width=1 / PIT_BINS, align="edge",
               color="C0" if n in MODELS else "C1", edgecolor="w")
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_title(f"{n}\n90% cover {c['coverage_90']:.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("PIT histograms (density; flat = calibrated, U = too narrow, hump = too wide)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "pit.png", dpi=80)
    plt.close(fig)


def plot_forecasts(args, cells, task=None):
    """Fan charts of the last channel at the first two test origins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples_dir = Path(args.cache) / "samples"
    names = [n for n in cells if (samples_dir / f"{n}.pt").exists()]
    if not names:
        return
    task = task or load_task(args.data, args.freq)
    hist, _, future = test_batch(task, args)
    H, back = args.horizon, min(2 * args.horizon, args.history)
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 1.9 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        samples = torch.load(samples_dir / f"{name}.pt")
        for col in range(2):
            ax = axes[row, col]
            ax.plot(range(-back, 0), hist[col, -back:, -1], color="k", lw=1)
            ax.plot(range(H), future[col, :, -1], color="k", lw=1, ls="--")
            q = torch.quantile(samples[:, col, :, -1], torch.tensor([0.05, 0.5, 0.95]), dim=0)
            ax.fill_between(range(H), q[0], q[2], alpha=0.3)
            ax.plot(range(H), q[1])
            ax.set_title(f"{name}: origin {col}, channel {task['names'][-1]}", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(Path(args.out) / "forecasts.png", dpi=70)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="CSV path or a shipped data set (etth1, stocks); default ETTh1")
    p.add_argument("--freq", default=None, help="frequency of a CSV without dates (pandas alias: h, D, B, ...)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny models, budgets and test set")
    p.add_argument("--report", action="store_true", help="only print the tables of finished cells")
    p.add_argument("--models", default=DEFAULT_MODELS,
                   help=f"comma list among {', '.join([*PEERS, *MODELS])}")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="training CPU minutes per trained model (default 10)")
    p.add_argument("--samples", type=int, default=None, help="forecast samples per origin (default 32)")
    p.add_argument("--history", type=int, default=None, help="history length (default per frequency)")
    p.add_argument("--horizon", type=int, default=None, help="forecast horizon (default per frequency)")
    p.add_argument("--seasons", default=None, help="comma list of season lengths, main first (default per frequency)")
    p.add_argument("--seasonal-lag", type=lambda v: tuple(int(s) for s in v.split(",")), default=None,
                   help="the state-space models' transition also reads the observations this many steps back "
                        "(a comma list for several lags)")
    p.add_argument("--stride", type=int, default=None, help="steps between forecast origins (default per frequency)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", "--results", dest="out", default=None, help="results directory")
    p.add_argument("--cache", default=None, help="trained models and samples (default benchmarks/.cache/...)")
    return p, p.parse_args(argv)


def finish_args(p, args, task):
    proto = protocol_defaults(task["freq"])
    if args.seasons is not None:
        args.seasons = tuple(int(s) for s in args.seasons.split(",") if s)
    defaults = dict(budget_minutes=(0.3 if args.quick else 10), samples=(4 if args.quick else 32),
                    history=proto["history"], horizon=proto["horizon"], seasons=proto["seasons"],
                    stride=proto["stride"] * (10 if args.quick else 1))
    fill_defaults(args, defaults)
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in PEERS and m not in MODELS:
            p.error(f"unknown model {m!r}; choose from {', '.join([*PEERS, *MODELS])}")
    args.models = models
    default_data = args.data is None or str(args.data).lower() == "etth1"
    tag = f"{task['tag']}_{args.history}_{args.horizon}" + ("_quick" if args.quick else "")
    if args.seasonal_lag:  # other state-space models: their own trained models
        tag += "_lag" + "-".join(map(str, args.seasonal_lag))
    if args.out is None:
        name = "forecasting" if default_data else f"forecasting/{task['tag']}"
        args.out = str(RESULTS / (name + ("_quick" if args.quick else "")))
    if args.cache is None:
        args.cache = str(CACHE / tag)
    return args


def main(argv=None):
    p, args = parse_args(argv)
    torch.set_num_threads(args.threads)
    task = load_task(args.data, args.freq)
    args = finish_args(p, args, task)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        label = "ETTh1" if args.data is None else Path(task["path"]).name
        write_json(out / "protocol.json", dict(
            data=label, freq=task["freq"], steps=len(task["z"]), channels=task["names"], test_start=task["split"],
            history=args.history, horizon=args.horizon, seasons=list(args.seasons), stride=args.stride,
            samples=args.samples, budget_minutes=args.budget_minutes, origins=len(origins(task, args)),
            test_mean=[round(float(v), 3) for v in task["z"][task["split"]:].mean(0)]))
        log(f"{label}: {len(task['z'])} steps x {len(task['names'])} channels ({task['freq']}), test from "
            f"{task['split']}, {len(origins(task, args))} origins; results in {args.out}")
        for name in args.models:
            evaluate(name, task, args)
            report(args, task)
    else:
        report(args, task)


if __name__ == "__main__":
    main()
