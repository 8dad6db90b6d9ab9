"""Forecast cost against quality of the conditional diffusion forecasters: the forecasting benchmark's trained
models and test origins, with other samplers and fewer network evaluations per draw (Heun with ``n`` steps:
``2 n - 1`` evaluations; DPM-Solver++(2M), ``dpm2m``, with ``n`` steps: ``n``).

For each model and sampler setting the table gives CRPS, 50%/90% coverage and CPU seconds per forecast origin
(one thread, all origins in one batch), and the cost ratio against the first setting (the forecasting table's
own: Heun with 10 steps). ``--reference CELL.json`` (a forecasting-table cell of the same origins, e.g. a row
recorded before a change) adds a paired bootstrap over origins of each setting's CRPS against that row's.

Commands::

    python benchmarks/forecast_cost.py                     # cond_dimts, cond_stagediff; heun:10,heun:6,dpm2m:8,dpm2m:6
    python benchmarks/forecast_cost.py --models cond_dimts --settings heun:10,dpm2m:4
    python benchmarks/forecast_cost.py --global-scaling --settings heun:10 \
        --out benchmarks/results/forecasting/forecast_cost_global.json   # the models saved before per-series scaling
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import RESULTS, log, read_json, write_json  # noqa: E402
from etth_tasks import build_model, load_task, trained_model  # noqa: E402
from forecasting import finish_args, paired_bootstrap, parse_args, scores, test_batch  # noqa: E402

from pyroseq.diffusion import function_evaluations  # noqa: E402
from pyroseq.inference import forecast  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="cond_dimts,cond_stagediff")
    parser.add_argument("--settings", default="heun:10,heun:6,dpm2m:8,dpm2m:6",
                        help="comma-separated sampler:steps, the first being the reference of the cost ratios")
    parser.add_argument("--out", default=str(RESULTS / "forecasting" / "forecast_cost.json"))
    parser.add_argument("--global-scaling", action="store_true",
                        help="score the models saved before per-series scaling (cache folder global_scaling/)")
    parser.add_argument("--reference", default=None,
                        help="a forecasting-table cell (JSON with crps_per_origin) to compare every setting with")
    own, rest = parser.parse_known_args(argv)
    p, args = parse_args(rest + ["--models", own.models])
    torch.set_num_threads(1)
    task = load_task(args.data, args.freq)
    args = finish_args(p, args, task)
    hist, cov, future = test_batch(task, args)
    rows = {}
    for name in args.models:
        if own.global_scaling:  # the same architecture without per-series scaling, and its saved weights
            model = build_model(name, channels=task["z"].shape[1], history=args.history, horizon=args.horizon)
            model.local_scaling = False
            model.load_state_dict(torch.load(Path(args.cache) / "global_scaling" / f"{name}.pt"))
            model.eval()
        else:
            model, _ = trained_model(name, task, Path(args.cache) / "models", args.budget_minutes,
                                     batch_size=args.batch_size, lr=args.lr, seed=args.seed, quick=args.quick,
                                     history=args.history, horizon=args.horizon)
        default = model.sampler, model.num_steps
        for setting in own.settings.split(","):
            sampler, steps = setting.split(":")
            model.sampler, model.num_steps = sampler, int(steps)
            t = time.process_time()
            samples = forecast(model, hist, args.horizon, num_samples=args.samples, covariates=cov, seed=args.seed,
                               chunk_size=args.chunk_size)
            cpu = (time.process_time() - t) / len(hist)
            s = scores(samples, future, seed=args.seed)
            rows[f"{name}/{setting}"] = dict(model=name, sampler=sampler, steps=int(steps),
                                             evaluations=function_evaluations(sampler, int(steps)), crps=s["crps"],
                                             coverage_50=s["coverage_50"], coverage_90=s["coverage_90"],
                                             cpu_seconds_per_origin=cpu, crps_per_origin=s["crps_per_origin"])
            log(f"{name} {setting}: CRPS {s['crps']:.4f}, cover50 {s['coverage_50']:.2f}, cover90 "
                f"{s['coverage_90']:.2f}, {cpu:.3f} CPU s/origin")
            write_json(Path(own.out), rows)
        model.sampler, model.num_steps = default
    first = own.settings.split(",")[0]
    lines = [f"| model | sampler:steps | network evaluations | CRPS | 50% cover | 90% cover | CPU s / origin | "
             f"cost vs {first} |", "|---|---|---|---|---|---|---|---|"]
    for row in rows.values():
        base = rows.get(f"{row['model']}/{first}")
        ratio = base["cpu_seconds_per_origin"] / row["cpu_seconds_per_origin"] if base else float("nan")
        lines.append(f"| {row['model']} | {row['sampler']}:{row['steps']} | {row['evaluations']} | {row['crps']:.4f} | "
                     f"{row['coverage_50']:.2f} | {row['coverage_90']:.2f} | {row['cpu_seconds_per_origin']:.3f} | "
                     f"{ratio:.2f}x cheaper |")
    reference = read_json(own.reference) if own.reference else None
    if reference:
        cpu_ref = reference["forecast_cpu_seconds_per_origin"]
        lines += ["", f"Against the reference row ({own.reference}: CRPS {reference['crps']:.4f}, "
                      f"{cpu_ref:.3g} CPU s / origin), paired bootstrap over origins:", ""]
        for key, row in rows.items():
            b = paired_bootstrap(row["crps_per_origin"], reference["crps_per_origin"])
            low, high = b["ratio_ci"]
            lines.append(f"- {key}: CRPS ratio {b['ratio']:.3f} (95% {low:.3f} to {high:.3f}), "
                         f"{cpu_ref / row['cpu_seconds_per_origin']:.2f}x cheaper")
    text = "\n".join(lines)
    print(text)
    Path(own.out).with_suffix(".md").write_text(text + "\n")


if __name__ == "__main__":
    main()
