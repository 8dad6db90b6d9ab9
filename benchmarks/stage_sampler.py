"""Sampler settings of a trained Stage-Diff at a long length: context-FID and per-stage spread of each.

Loads the ETTh Stage-Diff of the long-generation benchmark (``benchmarks/.cache/long_generation/models``,
history noise ``--history-noise``), generates ``--num`` series of ``--length`` steps (seed 777, a tuning draw
disjoint from the benchmark's seed 0) with every sampler setting given, and prints one line per setting:
seconds per series, context-FID against all real windows of that length (one TS2Vec fit: compare rows with
each other, not with the benchmark's 2,000-series, 5-repeat figures), and per 64-step stage the mean over
channels of the standard deviation and of the standard deviation of one-step differences, next to the data.
With ``--discriminative`` each setting is also given the benchmark's discriminative score (``--disc-repeats``
repeats) against a random subset of the real windows of the same size.

Settings are JSON dicts of keyword arguments of ``StageDiff.generate``: ``num_steps``, ``guidance`` (history
guidance weight), ``use_ema`` (false: the raw weights), ``sigma_data`` (None: the plain EDM ODE) and Heun's
``S_churn``, ``S_min``, ``S_max``, ``S_noise``. Command (about 10 CPU minutes per setting at 500 series)::

    python benchmarks/stage_sampler.py '{}' '{"S_churn": 40, "S_min": 0.05, "S_max": 1}' '{"num_steps": 40}' \\
        '{"sigma_data": null}' '{"guidance": 2.0}' '{"guidance": 1.5}' '{"guidance": 1.25}' '{"use_ema": false}' \\
        '{"guidance": 0.75}'
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import long_generation  # noqa: E402
from bench_common import RESULTS, random_subset  # noqa: E402
from stage_drift import stage_statistics  # noqa: E402

from pyroseq.data import get_dataset  # noqa: E402
from pyroseq.metrics import context_fid, discriminative_score  # noqa: E402

__all__ = ["stage_spread"]

TUNING_SEED = 777


def stage_spread(x, stage=long_generation.STAGE):
    """Per stage of series ``(n, T, C)``: the channel-mean standard deviation and standard deviation of one-step
    differences, two lists of ``T // stage`` floats."""
    per_stage = [stage_statistics(x[:, s * stage:(s + 1) * stage]) for s in range(x.shape[1] // stage)]
    return [float(std.mean()) for _, std, _ in per_stage], [float(dstd.mean()) for _, _, dstd in per_stage]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("settings", nargs="*", default=["{}"], help="JSON dicts of StageDiff.generate arguments")
    p.add_argument("--num", type=int, default=500)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--history-noise", type=float, default=0.0)
    p.add_argument("--discriminative", action="store_true", help="also give each setting a discriminative score")
    p.add_argument("--disc-repeats", type=int, default=3)
    p.add_argument("--results", default=str(RESULTS / "long_generation"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    settings = [json.loads(s) for s in args.settings]
    if not all(isinstance(s, dict) for s in settings):
        p.error("every setting must be a JSON object, e.g. '{\"guidance\": 1.5}'")
    # The benchmark's own settings, so the model found is the one it trained.
    bench = long_generation.parse_args(["--history-noise", str(args.history_noise), "--results", args.results])
    model, _ = long_generation.trained_stagediff("etth", "stagediff", bench)
    real = get_dataset("etth", length=args.length).windows.float().numpy()
    real_std, real_dstd = stage_spread(get_dataset("etth", length=long_generation.STAGE).windows.float().numpy())
    print(f"ETTh Stage-Diff (tau={args.history_noise:g}), {args.num} series of {args.length} steps, seed {TUNING_SEED}")
    subset = random_subset(torch.as_tensor(real), args.num, TUNING_SEED) if args.discriminative else None
    print("| setting | s / series | context-FID | std per stage | std of differences per stage | discriminative |")
    print("|---|---|---|---|---|---|")
    for kw in settings:
        t = time.time()
        x = model.generate(args.num, args.length, seed=TUNING_SEED, **kw)
        seconds = (time.time() - t) / args.num
        x = ((x.clamp(-1, 1) + 1) / 2).float().numpy()
        fid = context_fid(real, x, repeats=1, seed=0).mean
        std, dstd = stage_spread(x)
        disc = ""
        if args.discriminative:
            disc = str(discriminative_score(subset.numpy(), x, repeats=args.disc_repeats, seed=bench.seed,
                                            iterations=bench.disc_iterations))
        print(f"| {json.dumps(kw)} | {seconds:.3f} | {fid:.3f} | {' '.join(f'{v:.4f}' for v in std)} | "
              f"{' '.join(f'{v:.4f}' for v in dstd)} | {disc} |", flush=True)
    print(f"| real windows | | | {real_std[0]:.4f} | {real_dstd[0]:.4f} | |")


if __name__ == "__main__":
    main()
