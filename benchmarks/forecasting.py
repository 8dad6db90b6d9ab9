"""Probabilistic forecasting on ETTh1: history 96 hours, horizon 24, the last 20% of the series as test.

Models (all trained with :func:`pyroseq.inference.fit` under the same CPU-time budget, one thread, with
hour-of-day / day-of-week covariates): DKF, DDSSM, the latent-diffusion SSM (DDSSM dynamics + DiM-TS emission),
conditional DiM-TS and conditional Stage-Diff (forecasting as imputation, CSDI-style masks), optionally the
conditional CSDI-style network; baseline: seasonal naive (the last 24 hours repeated).

Forecast origins every ``--stride`` hours across the test part; ``--samples`` forecast samples per origin
(:func:`pyroseq.inference.forecast`). Scores in standardised units: CRPS (``pyroseq.metrics.crps``, mean over
entries), energy score over each 24 x 7 forecast (``pyroseq.metrics.energy_score``) and MAE of the sample median
(seasonal naive: its point forecast, whose CRPS equals its MAE).

Commands::

    python benchmarks/forecasting.py --quick                      # smoke run (minutes)
    nohup python benchmarks/forecasting.py > forecasting.log 2>&1 &   # full run (resumable)
    python benchmarks/forecasting.py --report                     # tables of finished cells

Every model writes ``results/forecasting[_quick]/<model>.json`` (and its weights under ``models/``), so an
interrupted run resumes where it stopped.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import fill_defaults, log, parse_choices, read_json, write_json  # noqa: E402
from etth_tasks import HISTORY, HORIZON, MODELS, load_task, trained_model  # noqa: E402

from pyroseq import metrics  # noqa: E402
from pyroseq.inference import forecast  # noqa: E402

BASELINE = "seasonal_naive"


def origins(task, stride):
    """Forecast origins ``t0`` (first forecast step) in the test part."""
    z, split = task["z"], task["split"]
    return list(range(split, len(z) - HORIZON + 1, stride))


def test_batch(task, stride):
    """``(history (N, 96, 7), covariates (N, 120, 4), future (N, 24, 7))`` at every origin."""
    z, u = task["z"], task["u"]
    t0 = origins(task, stride)
    hist = torch.stack([z[t - HISTORY:t] for t in t0])
    cov = torch.stack([u[t - HISTORY:t + HORIZON] for t in t0])
    future = torch.stack([z[t:t + HORIZON] for t in t0])
    return hist, cov, future


def scores(samples, future):
    """CRPS, energy score and MAE of the sample median of ``samples`` ``(S, N, H, C)``."""
    median = samples.median(0).values
    return dict(crps=float(metrics.crps(samples, future)),
                energy_score=float(metrics.energy_score(samples, future)) if len(samples) > 1 else
                float((samples[0] - future).flatten(1).norm(dim=1).mean()),
                mae=float((median - future).abs().mean()))


def evaluate(name, task, args):
    path = Path(args.results) / f"{name}.json"
    cell = read_json(path)
    if cell is not None and "crps" in cell:
        return cell
    hist, cov, future = test_batch(task, args.stride)
    if name == BASELINE:
        t0 = time.process_time()
        samples = hist[None, :, -24:]  # the last day repeated
        cell = dict(model=name, **scores(samples, future), origins=len(hist), samples=1,
                    forecast_cpu_seconds=time.process_time() - t0)
        write_json(path, cell)
        return cell
    model, meta = trained_model(name, task, Path(args.results) / "models", args.budget_minutes,
                                batch_size=args.batch_size, lr=args.lr, seed=args.seed, quick=args.quick)
    log(f"{name}: forecasting {len(hist)} origins x {args.samples} samples")
    t0 = time.process_time()
    samples = forecast(model, hist, HORIZON, num_samples=args.samples, covariates=cov, seed=args.seed,
                       chunk_size=args.chunk_size)
    cpu = time.process_time() - t0
    cell = dict(model=name, **scores(samples, future), origins=len(hist), samples=args.samples,
                forecast_cpu_seconds=cpu, train=meta)
    torch.save(samples[:, :4].clone(), Path(args.results) / f"{name}.samples.pt")  # a few origins, for plots
    write_json(path, cell)
    log(f"{name}: CRPS {cell['crps']:.4f}, ES {cell['energy_score']:.3f}, MAE {cell['mae']:.4f} "
        f"({cpu / 60:.1f} CPU min to forecast)")
    return cell


def report(args):
    out = Path(args.results)
    cells = {name: read_json(out / f"{name}.json") for name in [BASELINE, *MODELS]}
    base, dkf = cells[BASELINE], cells["dkf"]
    lines = ["## Forecasting ETTh1 (history 96, horizon 24, last 20% as test; standardised units)", "",
             "| model | CRPS | energy score | MAE | CRPS / seasonal naive | CRPS / DKF | training |",
             "|---|---|---|---|---|---|---|"]
    for name, cell in cells.items():
        if cell is None or "crps" not in cell:
            continue
        rel_base = cell["crps"] / base["crps"] if base else float("nan")
        rel_dkf = cell["crps"] / dkf["crps"] if dkf and "crps" in dkf else float("nan")
        train = cell.get("train")
        trained = f"{train['steps']} steps, {train['cpu_seconds'] / 60:.0f} CPU min" if train else "-"
        label = MODELS.get(name, "seasonal naive (last day repeated)")
        lines.append(f"| {label} | {cell['crps']:.4f} | {cell['energy_score']:.3f} | {cell['mae']:.4f} | "
                     f"{rel_base:.3f} | {rel_dkf:.3f} | {trained} |")
    ours = {n: c for n, c in cells.items() if c and "crps" in c and n not in (BASELINE,)}
    if base and dkf and "crps" in dkf and ours:
        best = min(ours, key=lambda n: ours[n]["crps"])
        b = ours[best]["crps"]
        lines += ["", "## Acceptance checks", "",
                  f"- [{'x' if b <= 0.8 * base['crps'] else ' '}] best pyroseq model ({best}) CRPS {b:.4f} "
                  f"<= 0.8 x seasonal naive {base['crps']:.4f} ({b / base['crps']:.3f})",
                  f"- [{'x' if b <= 0.9 * dkf['crps'] else ' '}] best pyroseq model ({best}) CRPS {b:.4f} "
                  f"<= 0.9 x DKF {dkf['crps']:.4f} ({b / dkf['crps']:.3f})"]
    any_cell = next((c for c in cells.values() if c), None)
    if any_cell:
        lines += ["", f"{any_cell['origins']} forecast origins every {args.stride} hours; "
                      f"{args.samples} samples per origin; budget {args.budget_minutes} CPU min per model."]
    text = "\n".join(lines)
    print(text)
    (out / "summary.md").write_text(text + "\n")
    plot(args, cells)


def plot(args, cells):
    """Fan charts of the oil-temperature channel at the first test origins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.results)
    names = [n for n in MODELS if (out / f"{n}.samples.pt").exists()]
    if not names:
        return
    task = load_task()
    hist, _, future = test_batch(task, args.stride)
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 2.2 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        samples = torch.load(out / f"{name}.samples.pt")
        for col in range(2):
            ax = axes[row, col]
            ax.plot(range(-48, 0), hist[col, -48:, -1], color="k", lw=1)
            ax.plot(range(HORIZON), future[col, :, -1], color="k", lw=1, ls="--")
            q = torch.quantile(samples[:, col, :, -1], torch.tensor([0.05, 0.5, 0.95]), dim=0)
            ax.fill_between(range(HORIZON), q[0], q[2], alpha=0.3)
            ax.plot(range(HORIZON), q[1])
            ax.set_title(f"{MODELS[name]}: origin {col}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "forecasts.png", dpi=90)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: tiny models, budgets and test set")
    p.add_argument("--report", action="store_true", help="only print the tables of finished cells")
    p.add_argument("--models", default="dkf,ddssm,latent_diffusion,cond_dimts,cond_stagediff",
                   help=f"comma list among {', '.join(MODELS)}")
    p.add_argument("--budget-minutes", type=float, default=None, help="CPU minutes per model (default 15)")
    p.add_argument("--samples", type=int, default=None, help="forecast samples per origin (default 32)")
    p.add_argument("--stride", type=int, default=None, help="hours between forecast origins (default 48)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", default=None)
    args = p.parse_args(argv)
    defaults = dict(budget_minutes=(0.3 if args.quick else 15), samples=(4 if args.quick else 32),
                    stride=(480 if args.quick else 48))
    fill_defaults(args, defaults)
    args.models = parse_choices(p, args.models, MODELS)
    if args.results is None:
        args.results = str(Path(__file__).resolve().parent / "results" / ("forecasting_quick" if args.quick
                                                                            else "forecasting"))
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.report:
        task = load_task()
        log(f"ETTh1: {len(task['z'])} steps, test from {task['split']}; results in {args.results}")
        evaluate(BASELINE, task, args)
        for name in args.models:
            evaluate(name, task, args)
    report(args)


if __name__ == "__main__":
    main()
