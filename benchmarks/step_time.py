"""Seconds per training step and per generated window of this checkout against another git revision, measured in
one run.

Each training model is trained with :func:`pyroseq.inference.fit` for ``--steps`` steps (after ``--warmup`` steps)
in a fresh one-thread process, alternating between the baseline revision (checked out as a git worktree in the
ignored cache) and this checkout, ``--repeats`` times each. The generation cases (``*_generate``,
``*_forecast``) time a warm-up call and then ``--steps`` windows' worth of calls of DiM-TS ``generate``,
Stage-Diff ``generate`` (4 stages) and conditional CSDI and Stage-Diff forecasts
(:func:`pyroseq.inference.forecast`; Stage-Diff: 3 history stages and 1 forecast stage) with random weights.
The table gives the median CPU seconds per step (or per window) and the ratio new / baseline (below 1: faster).
Same data, model sizes and seed on both sides.

Commands::

    python benchmarks/step_time.py --baseline 5e252bf                  # training and generation
    python benchmarks/step_time.py --baseline 5e252bf --models ddssm --repeats 5
    python benchmarks/step_time.py --baseline 8338513 --models cond_stagediff_forecast \
        --out benchmarks/results/step_time_stage_skip.json   # history stages skip the sampler (after 8338513)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import CACHE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: The generation cases (seconds per generated window).
GENERATION = ("dimts_generate", "stagediff_generate", "cond_forecast", "cond_stagediff_forecast")
# One training run (or generation run) in a child process; prints the CPU seconds per step (window) as JSON.
CHILD = r"""
import json, sys, time, warnings
GENERATION = GENERATION_NAMES

import torch
torch.set_num_threads(1)
warnings.simplefilter("ignore")
from pyroseq.inference import fit, forecast
from pyroseq.models import DDSSM, ConditionalDiffusion, DiMTS, StageDiff
name, warmup, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
g = torch.Generator().manual_seed(0)
if name in GENERATION:
    torch.manual_seed(0)
    if name == "dimts_generate":
        model, n = DiMTS(4, 24), 16
        call = lambda seed: model.generate(n, seed=seed)
    elif name == "stagediff_generate":
        model, n = StageDiff(4, stage_length=32), 8
        call = lambda seed: model.generate(n, 128, seed=seed)
    elif name == "cond_stagediff_forecast":  # 4 stages of 12 steps, the last one forecast
        model, n = ConditionalDiffusion(4, 48, backbone="stagediff", stage_length=12, horizon=12, num_steps=10,
                                        d_model=16, num_heads=2, num_encoder_layers=1), 4 * 4
        history = torch.randn(4, 36, 4, generator=g)
        call = lambda seed: forecast(model, history, 12, num_samples=4, seed=seed)
    else:
        model, n = ConditionalDiffusion(4, 48, backbone="csdi", horizon=12, num_steps=10), 4 * 4
        history = torch.randn(4, 36, 4, generator=g)
        call = lambda seed: forecast(model, history, 12, num_samples=4, seed=seed)
    model.eval()
    call(0)
    calls = max(2, steps // n)
    start = time.process_time()
    for seed in range(calls):
        call(seed)
    print(json.dumps((time.process_time() - start) / (calls * n)))
    sys.exit()
if name == "ddssm":
    x = torch.randn(256, 32, 4, generator=g).cumsum(1) * 0.3
    model = DDSSM(4, 8)
elif name == "dimts":
    x = torch.rand(256, 24, 4, generator=g) * 2 - 1
    model = DiMTS(4, 24)
else:
    x = torch.rand(256, 64, 4, generator=g) * 2 - 1
    model = StageDiff(4, stage_length=32)
torch.manual_seed(0)
marks = []
fit(model, x, num_steps=warmup + steps, batch_size=32, progress=False,
    callback=lambda step, loss: marks.append(time.process_time()))
print(json.dumps((marks[-1] - marks[warmup - 1]) / steps))
"""


def worktree(revision):
    """A git worktree of ``revision`` in the cache (created once)."""
    path = CACHE / "worktrees" / revision
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), revision], check=True,
                       capture_output=True)
    return path


def run_child(source, code, *args):
    """Run ``code`` in a one-thread Python process on the checkout ``source``; returns the JSON of its last line."""
    env = dict(os.environ, PYTHONPATH=str(source), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, check=True, capture_output=True,
                         text=True, cwd=str(source))
    return json.loads(out.stdout.strip().splitlines()[-1])


def seconds_per_step(source, name, warmup, steps):
    return run_child(source, CHILD.replace("GENERATION_NAMES", repr(GENERATION)), name, warmup, steps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="git revision to compare with")
    parser.add_argument("--models", default=",".join(("ddssm", "dimts", "stagediff") + GENERATION))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    args = parser.parse_args(argv)
    base = worktree(args.baseline)
    rows = {}
    for name in args.models.split(","):
        times = {"baseline": [], "new": []}
        for _ in range(args.repeats):  # alternate, so drifts of the machine's load hit both sides alike
            times["baseline"].append(seconds_per_step(base, name, args.warmup, args.steps))
            times["new"].append(seconds_per_step(ROOT, name, args.warmup, args.steps))
        old, new = statistics.median(times["baseline"]), statistics.median(times["new"])
        rows[name] = dict(baseline=old, new=new, ratio=new / old, runs=times)
    print(f"CPU seconds per training step or generated window (one thread, median of {args.repeats}); "
          f"baseline {args.baseline}")
    print(f"{'model':<10} {'baseline':>9} {'new':>9} {'ratio':>7}")
    for name, row in rows.items():
        print(f"{name:<10} {row['baseline']:>9.4f} {row['new']:>9.4f} {row['ratio']:>7.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(dict(baseline=args.baseline, rows=rows), indent=1))


if __name__ == "__main__":
    main()
