"""Budget curves: forecast CRPS of each pyroseq model after 10, 30 and 60 CPU minutes of training (one thread).

Same protocol as benchmarks/forecasting.py (ETTh1 by default: history 96, horizon 24, the 73 test origins, 32
samples). One training run per model: the 30-minute model is the 10-minute one trained 20 minutes more, resumed
from its checkpoint (:func:`etth_tasks.trained_model` with ``snapshot=True`` keeps each budget's weights). Models are
taken in rounds (every model to 10 minutes, then every model to 30, then to 60), so an interrupted run has the
cheapest points of every model first; each point is written to ``results/forecasting/budget_curves.json`` as soon
as it is scored, and the run resumes after the last written point. Runs of disjoint ``--models`` may share the file
(one per core).

Commands::

    nohup python benchmarks/budget_curves.py > benchmarks/.cache/forecasting/logs/curves.log 2>&1 &
    python benchmarks/budget_curves.py --report       # plot and table of the points so far
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import log, read_json, write_json  # noqa: E402
from etth_tasks import CACHE, MODELS, load_task, trained_model  # noqa: E402
from forecasting import RESULTS, scores, test_batch  # noqa: E402

from pyroseq.inference import forecast  # noqa: E402

BUDGETS = (10, 30, 60)
DEFAULT_MODELS = "dkf,ddssm,latent_diffusion,cond_stagediff,cond_dimts"


def point(name, budget, task, args, results):
    key = f"{name}@{budget:g}"
    if key in results:
        return results[key]
    model, meta = trained_model(name, task, Path(args.cache), budget, seed=args.seed, history=args.history,
                                horizon=args.horizon, snapshot=True)
    hist, cov, future = test_batch(task, args)
    t = time.process_time()
    samples = forecast(model, hist, args.horizon, num_samples=args.samples, covariates=cov, seed=args.seed,
                       chunk_size=1024)
    cpu = time.process_time() - t
    s = scores(samples, future, args.seed)
    results.update(read_json(args.out) or {})  # points written meanwhile by a run of other models
    results[key] = dict(model=name, budget_minutes=budget, steps=meta["steps"],
                        train_cpu_minutes=meta["cpu_seconds"] / 60, crps=s["crps"], coverage_50=s["coverage_50"],
                        coverage_90=s["coverage_90"], energy_score=s["energy_score"], mae=s["mae"],
                        forecast_cpu_seconds_per_origin=cpu / len(hist))
    write_json(args.out, results)
    log(f"{key}: {meta['steps']} steps, CRPS {s['crps']:.4f}, 90% cover {s['coverage_90']:.2f}")
    return results[key]


def report(args):
    results = read_json(args.out) or {}
    names = [n for n in MODELS if any(v["model"] == n for v in results.values())]
    budgets = sorted({float(v["budget_minutes"]) for v in results.values()} | set(BUDGETS))
    lines = ["| model | " + " | ".join(f"CRPS at {b:g} CPU min (steps; 90% cover)" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for n in names:
        cells = []
        for b in budgets:
            r = results.get(f"{n}@{b:g}")
            cells.append(f"{r['crps']:.4f} ({r['steps']}; {r['coverage_90']:.2f})" if r else "not run yet")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    text = "\n".join(["## ETTh1 forecasting CRPS against the training budget (one thread)", "",
                      "One training run per model, resumed from its checkpoint between budgets; same 73 origins and "
                      "32 samples as the forecasting table. Command: `python benchmarks/budget_curves.py`.", "",
                      *lines])
    print(text)
    Path(args.out).with_suffix(".md").write_text(text + "\n")
    if not names:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, n in enumerate(names):
        pts = sorted((r["budget_minutes"], r["crps"]) for r in results.values() if r["model"] == n)
        ax.plot(*zip(*pts), marker="o", color=f"C{i}", label=n)
    peers = read_json(Path(args.out).parent / "summary.json") or {}
    for j, p in enumerate(("mstl", "deepar")):
        if p in peers:
            ax.axhline(peers[p]["crps"], color="gray", ls=("--", ":")[j], lw=1, label=f"{p} (peer)")
    ax.set_xlabel("training CPU minutes (one thread)")
    ax.set_ylabel("CRPS (standardised)")
    ax.set_xticks(budgets)
    ax.legend(fontsize=7)
    ax.set_title("ETTh1 forecasting: CRPS against training budget", fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(args.out).with_suffix(".png"), dpi=90)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "forecasting" / "budget_curves.json"))
    p.add_argument("--cache", default=str(CACHE / "etth1_96_24" / "curves"))
    args = p.parse_args(argv)
    args.history, args.horizon, args.stride = 96, 24, 48
    torch.set_num_threads(1)
    if not args.report:
        task = load_task()
        results = read_json(args.out) or {}
        for budget in (float(b) for b in args.budgets.split(",")):
            for name in args.models.split(","):
                point(name, budget, task, args, results)
                report(args)
    report(args)


if __name__ == "__main__":
    main()
