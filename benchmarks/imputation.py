"""Imputation on ETTh1: 10%, 50% and 90% of the entries missing at random in 120-hour test windows.

The conditional diffusion models of benchmarks/forecasting.py (trained there with CSDI-style "mixed" masks:
half random missingness, half forecast masks; their cached weights are reused, or trained here with the same
budget) impute the missing entries with ``ConditionalDiffusion.impute``; the baseline is linear interpolation
along time per channel (nearest observed value at the edges). Scores on the missing entries only, in
standardised units: MAE of the sample median and CRPS (``pyroseq.metrics.crps``; interpolation is a point
forecast, so its CRPS equals its MAE).

Commands::

    python benchmarks/imputation.py --quick          # smoke run
    nohup python benchmarks/imputation.py > benchmarks/.cache/imputation.log 2>&1 &
    python benchmarks/imputation.py --report
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import fill_defaults, log, parse_choices, read_json, write_json  # noqa: E402
from etth_tasks import CACHE, CONDITIONAL, MODELS, MODELS_DIR, WINDOW, load_task, trained_model  # noqa: E402

from pyroseq import metrics  # noqa: E402

RATES = (0.1, 0.5, 0.9)
BASELINE = "linear_interpolation"


def test_windows(task, stride):
    """Test windows ``(N, 120, 7)`` and their covariates ``(N, 120, 4)``."""
    z, u, split = task["z"], task["u"], task["split"]
    starts = range(split, len(z) - WINDOW + 1, stride)
    return torch.stack([z[s:s + WINDOW] for s in starts]), torch.stack([u[s:s + WINDOW] for s in starts])


def missing_mask(shape, rate, seed):
    """Observation mask (True = observed) with ``rate`` of the entries missing completely at random; every
    window keeps at least one observed entry."""
    g = torch.Generator().manual_seed(seed)
    observed = torch.rand(shape, generator=g) >= rate
    observed[~observed.flatten(1).any(1), 0, 0] = True
    return observed


def linear_interpolation(x, observed):
    """Per window and channel, linear interpolation over time of the observed entries (constant beyond the
    first/last observed step; the channel mean 0 if a channel has no observed entry)."""
    out = x.clone()
    steps = np.arange(x.shape[1])
    for n in range(x.shape[0]):
        for c in range(x.shape[2]):
            obs = observed[n, :, c].numpy()
            if not obs.any():
                out[n, :, c] = 0.0
                continue
            out[n, :, c] = torch.from_numpy(np.interp(steps, steps[obs], x[n, obs, c].numpy()).astype(np.float32))
    return out


def evaluate(name, rate, task, args):
    path = Path(args.results) / f"{name}_{int(rate * 100)}.json"
    cell = read_json(path)
    if cell is not None and "mae" in cell:
        return cell
    x, u = test_windows(task, args.stride)
    observed = missing_mask(x.shape, rate, args.seed)
    missing = ~observed
    truth = x[missing]
    t0 = time.process_time()
    if name == BASELINE:
        filled = linear_interpolation(x, observed)
        samples = filled[None]
    else:
        model, _ = trained_model(name, task, Path(args.models_dir), args.budget_minutes, seed=args.seed,
                                 quick=args.quick)
        log(f"{name} {rate:.0%}: imputing {len(x)} windows x {args.samples} samples")
        samples = model.impute(torch.where(observed, x, torch.nan), covariates=u, num_samples=args.samples,
                               seed=args.seed)
        changed = (samples[:, observed] != x[observed]).sum().item()
        if changed:
            raise RuntimeError(f"{name} changed {changed} observed entries")
    cpu = time.process_time() - t0
    s = samples[:, missing]
    cell = dict(model=name, rate=rate, mae=float((s.median(0).values - truth).abs().mean()),
                crps=float(metrics.crps(s, truth)), windows=len(x), missing_entries=int(missing.sum()),
                samples=len(samples), cpu_seconds=cpu)
    write_json(path, cell)
    log(f"{name} {rate:.0%}: MAE {cell['mae']:.4f}, CRPS {cell['crps']:.4f}")
    return cell


def report(args):
    out = Path(args.results)
    names = [BASELINE, *CONDITIONAL]
    lines = ["## Imputation on ETTh1 (120-hour test windows, missing completely at random; standardised units)", "",
             "| model | " + " | ".join(f"MAE {r:.0%} | CRPS {r:.0%}" for r in RATES) + " |",
             "|---|" + "---|---|" * len(RATES)]
    cells = {(n, r): read_json(out / f"{n}_{int(r * 100)}.json") for n in names for r in RATES}
    for n in names:
        if not any(cells[n, r] for r in RATES):
            continue
        row = []
        for r in RATES:
            c = cells[n, r]
            row += [f"{c['mae']:.4f}", f"{c['crps']:.4f}"] if c else ["n/a", "n/a"]
        label = MODELS.get(n, "linear interpolation")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    checks = []
    for r in (0.5, 0.9):
        base = cells[BASELINE, r]
        ours = {n: cells[n, r] for n in CONDITIONAL if cells[n, r]}
        if base and ours:
            best = min(ours, key=lambda n: ours[n]["mae"])
            ok = ours[best]["mae"] < base["mae"]
            checks.append(f"- [{'x' if ok else ' '}] {r:.0%} missing: best conditional model ({best}) MAE "
                          f"{ours[best]['mae']:.4f} < linear interpolation {base['mae']:.4f}")
    if checks:
        lines += ["", "## Acceptance checks", "", *checks]
    any_cell = next((c for c in cells.values() if c), None)
    if any_cell:
        models_dir = Path(args.models_dir).resolve()
        repository = Path(__file__).resolve().parents[1]
        if models_dir.is_relative_to(repository):  # no machine-specific paths in the committed summary
            models_dir = models_dir.relative_to(repository)
        lines += ["", f"{any_cell['windows']} windows (one every {args.stride} hours of the test part); "
                      f"{args.samples} imputations per window; models from {models_dir}."]
    text = "\n".join(lines)
    print(text)
    (out / "summary.md").write_text(text + "\n")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--report", action="store_true")
    p.add_argument("--models", default=",".join(CONDITIONAL), help=f"comma list among {', '.join(CONDITIONAL)}")
    p.add_argument("--budget-minutes", type=float, default=None, help="CPU minutes per model if not yet trained")
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--stride", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", default=None)
    p.add_argument("--models-dir", default=None, help="trained models (default: the forecasting benchmark's)")
    args = p.parse_args(argv)
    defaults = dict(budget_minutes=(0.3 if args.quick else 15), samples=(3 if args.quick else 10),
                    stride=(480 if args.quick else 48))
    fill_defaults(args, defaults)
    args.models = parse_choices(p, args.models, CONDITIONAL)
    root = Path(__file__).resolve().parent / "results"
    suffix = "_quick" if args.quick else ""
    if args.results is None:
        args.results = str(root / f"imputation{suffix}")
    if args.models_dir is None:
        args.models_dir = str(CACHE / "etth1_96_24_quick" / "models" if args.quick else MODELS_DIR)
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.report:
        task = load_task()
        for rate in RATES:
            evaluate(BASELINE, rate, task, args)
            for name in args.models:
                evaluate(name, rate, task, args)
    report(args)


if __name__ == "__main__":
    main()
