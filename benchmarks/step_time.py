"""Seconds per training step of this checkout against another git revision, measured in one run.

Each model is trained with :func:`pyroseq.inference.fit` for ``--steps`` steps (after ``--warmup`` steps) in a
fresh one-thread process, alternating between the baseline revision (checked out as a git worktree in the
ignored cache) and this checkout, ``--repeats`` times each; the table gives the median CPU seconds per step
and the ratio new / baseline (below 1: faster). Same data, model sizes and seed on both sides.

Commands::

    python benchmarks/step_time.py --baseline 5e252bf                  # DDSSM, DiM-TS, Stage-Diff
    python benchmarks/step_time.py --baseline 5e252bf --models ddssm --repeats 5
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

# One training run in a child process; prints the CPU seconds per step as JSON.
CHILD = r"""
import json, sys, time, warnings
import torch
torch.set_num_threads(1)
warnings.simplefilter("ignore")
from pyroseq.inference import fit
from pyroseq.models import DDSSM, DiMTS, StageDiff
name, warmup, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
g = torch.Generator().manual_seed(0)
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


def seconds_per_step(source, name, warmup, steps):
    env = dict(os.environ, PYTHONPATH=str(source), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD, name, str(warmup), str(steps)], env=env, check=True,
                         capture_output=True, text=True, cwd=str(source))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="git revision to compare with")
    parser.add_argument("--models", default="ddssm,dimts,stagediff")
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
    print(f"CPU seconds per training step (one thread, median of {args.repeats}); baseline {args.baseline}")
    print(f"{'model':<10} {'baseline':>9} {'new':>9} {'ratio':>7}")
    for name, row in rows.items():
        print(f"{name:<10} {row['baseline']:>9.4f} {row['new']:>9.4f} {row['ratio']:>7.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(dict(baseline=args.baseline, rows=rows), indent=1))


if __name__ == "__main__":
    main()
