"""DDSSM versus DKF on the bimodal switching process (the benchmark of the DDSSM paper, see docs/design.md).

Trains both models (T = 32, 1024 training sequences), forecasts held-out series (another seed) and
prints one table: one-step centred JSD against the true mixture, CRPS and energy score of 1-step and
10-step forecasts, the IWAE bound, seconds per training step (and the ratio to DKF), plus an oracle
row (the true process given the true latent state). Writes the table and the acceptance checks to
benchmarks/results/ddssm_vs_dkf.txt.

    python benchmarks/ddssm_vs_dkf.py                 # full run (~30-40 min on 2 busy cores)
    python benchmarks/ddssm_vs_dkf.py --steps 500     # quick look
"""

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import CACHE, RESULTS  # noqa: E402

from pyroseq.demo import ComparisonConfig, acceptance, format_table, run_comparison  # noqa: E402

EVALUATION_FIELDS = ("num_test", "test_length", "history", "horizon", "num_samples", "iwae_series", "iwae_particles",
                     "iwae_ode_steps", "timing_rounds", "timing_steps", "test_seed")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="training steps per model")
    parser.add_argument("--num-test", type=int, default=None, help="number of test series")
    parser.add_argument("--num-samples", type=int, default=None, help="forecast samples per series")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a ComparisonConfig field, e.g. --set 'ddssm_kwargs={\"sigma_data\": 0.5}'")
    parser.add_argument("--out", default=str(RESULTS / "ddssm_vs_dkf.txt"))
    parser.add_argument("--checkpoint-dir", default=str(CACHE / "checkpoints"),
                        help="checkpoints (per configuration) so an interrupted run resumes")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    overrides = {}
    if args.steps is not None:
        overrides["num_steps"] = args.steps
    if args.num_test is not None:
        overrides["num_test"] = args.num_test
    if args.num_samples is not None:
        overrides["num_samples"] = args.num_samples
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
        if key == "kl_schedule":
            overrides[key] = tuple(overrides[key])
    config = ComparisonConfig.benchmark(**overrides)
    # Checkpoints are keyed by the training settings only, so evaluation settings can change without retraining.
    training = {k: v for k, v in dataclasses.asdict(config).items() if k not in EVALUATION_FIELDS}
    tag = hashlib.sha1(repr(sorted(training.items())).encode()).hexdigest()[:10]
    ckpt_dir = os.path.join(args.checkpoint_dir, tag)
    print(config, flush=True)
    start = time.perf_counter()
    result = run_comparison(config, checkpoint_dir=ckpt_dir, progress=not args.no_progress,
                            log=lambda msg: print(msg, flush=True))
    table = format_table(result["rows"], config.horizon)
    checks = acceptance(result["rows"])
    report = [f"python benchmarks/ddssm_vs_dkf.py {' '.join(sys.argv[1:])}".rstrip(), "", table, "",
              "acceptance:"] + [f"  [{'PASS' if ok else 'FAIL'}] {text}" for text, ok in checks]
    report += ["", f"config: {config}", f"total wall time {time.perf_counter() - start:.0f} s "
               f"(machine shared with other jobs)"]
    text = "\n".join(report)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
