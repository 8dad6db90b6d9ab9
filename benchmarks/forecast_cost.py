"""Forecast cost against quality of the conditional diffusion forecasters: the forecasting benchmark's trained
models and test origins, with fewer Heun steps per sample (2 n - 1 network evaluations for n steps).

For each model and number of steps the table gives CRPS, 50%/90% coverage and CPU seconds per forecast origin
(one thread, all origins in one batch), and the cost ratio against the models' default of 20 steps.

Commands::

    python benchmarks/forecast_cost.py                                # cond_dimts, cond_stagediff; 20, 10, 6, 4 steps
    python benchmarks/forecast_cost.py --models cond_dimts --steps 20,8
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import RESULTS, log, write_json  # noqa: E402
from etth_tasks import load_task, trained_model  # noqa: E402
from forecasting import finish_args, parse_args, scores, test_batch  # noqa: E402

from pyroseq.inference import forecast  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="cond_dimts,cond_stagediff")
    parser.add_argument("--steps", default="20,10,6,4")
    parser.add_argument("--out", default=str(RESULTS / "forecasting" / "forecast_cost.json"))
    own, rest = parser.parse_known_args(argv)
    p, args = parse_args(rest + ["--models", own.models])
    torch.set_num_threads(1)
    task = load_task(args.data, args.freq)
    args = finish_args(p, args, task)
    hist, cov, future = test_batch(task, args)
    rows = {}
    for name in args.models:
        model, _ = trained_model(name, task, Path(args.cache) / "models", args.budget_minutes,
                                 batch_size=args.batch_size, lr=args.lr, seed=args.seed, quick=args.quick,
                                 history=args.history, horizon=args.horizon)
        default = model.num_steps
        for steps in (int(s) for s in own.steps.split(",")):
            model.num_steps = steps
            t = time.process_time()
            samples = forecast(model, hist, args.horizon, num_samples=args.samples, covariates=cov, seed=args.seed,
                               chunk_size=args.chunk_size)
            cpu = (time.process_time() - t) / len(hist)
            s = scores(samples, future, seed=args.seed)
            rows[f"{name}/{steps}"] = dict(model=name, steps=steps, evaluations=2 * steps - 1, crps=s["crps"],
                                           coverage_50=s["coverage_50"], coverage_90=s["coverage_90"],
                                           cpu_seconds_per_origin=cpu)
            log(f"{name} {steps:>3} steps: CRPS {s['crps']:.4f}, cover50 {s['coverage_50']:.2f}, cover90 "
                f"{s['coverage_90']:.2f}, {cpu:.3f} CPU s/origin")
            write_json(Path(own.out), rows)
        model.num_steps = default
    print(f"{'model':<16} {'steps':>5} {'NFE':>4} {'CRPS':>7} {'cov50':>6} {'cov90':>6} {'CPU s/origin':>12} "
          f"{'cost vs 20':>10}")
    for row in rows.values():
        base = rows.get(f"{row['model']}/20")
        ratio = row["cpu_seconds_per_origin"] / base["cpu_seconds_per_origin"] if base else float("nan")
        print(f"{row['model']:<16} {row['steps']:>5} {row['evaluations']:>4} {row['crps']:>7.4f} "
              f"{row['coverage_50']:>6.2f} {row['coverage_90']:>6.2f} {row['cpu_seconds_per_origin']:>12.3f} "
              f"{ratio:>10.2f}")


if __name__ == "__main__":
    main()
