"""Stage drift of Stage-Diff series: score every stage of generated long series on its own.

Reads the generated series of a long-generation cell (``benchmarks/.cache/long_generation/<cell>.samples.pt``,
shape ``(n, T, C)`` in [0, 1]), cuts them into their ``T / 64`` stages and prints, per stage, the context-FID
against all real 64-step windows (``--repeats`` TS2Vec fits) and the per-channel mean, standard deviation and
standard deviation of one-step differences, next to the same statistics of the real windows. A model whose
stages drift shows a FID that grows with the stage index.

A second table splits the variation of the series by time scale, against real windows of the same length:
the standard deviation inside a stage, the standard deviation of the stage means within a series (slow,
stage-to-stage variation) and the standard deviation of one-step differences (fast variation), each per
channel (means over series and stages). ``--no-fid`` prints only this table and the next (seconds).

A third table follows the spread stage by stage: the within-stage standard deviation of each stage (mean over
series and channels), its shortfall against the data, and how persistent the spread is in the data (the slope of
a series' within-stage std at stage ``k + 1`` on that at stage ``k``, centred per channel and pooled). With that slope
``b``, a stage conditioned on a history whose spread is short by ``d_k`` would be short by ``b d_k`` if the model
continued it as the data do; the rest, ``d_{k+1} - b d_k``, is what each conditioned stage adds.

Commands::

    python benchmarks/stage_drift.py --cell etth_stagediff_256      # about 8 CPU minutes with --repeats 1
    python benchmarks/stage_drift.py --cell etth_stagediff_256 --no-fid
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import RESULTS, cached  # noqa: E402
from long_generation import STAGE  # noqa: E402

from pyroseq.data import get_dataset  # noqa: E402
from pyroseq.metrics import context_fid  # noqa: E402

__all__ = ["stage_statistics", "variation_scales", "spread_persistence"]


def stage_statistics(x):
    """Per-channel mean, std and std of one-step differences of windows ``(n, L, C)``."""
    return x.mean((0, 1)), x.std((0, 1)), np.diff(x, axis=1).std((0, 1))


def variation_scales(x, stage=STAGE):
    """Variation of series ``(n, T, C)`` (``T`` a multiple of ``stage``) by time scale, per channel: the std over
    the steps of a stage, the std of a series' stage means, and the std of one-step differences within a
    stage, each averaged over series (and stages); three arrays of shape ``(C,)``."""
    n, T, C = x.shape
    stages = x.reshape(n, T // stage, stage, C)
    within = stages.std(axis=2).mean(axis=(0, 1))
    between = stages.mean(axis=2).std(axis=1).mean(axis=0) if T > stage else np.full(C, np.nan)
    fast = np.diff(stages, axis=2).std(axis=2).mean(axis=(0, 1))
    return within, between, fast


def spread_persistence(x, stage=STAGE):
    """Within-stage spread of series ``(n, T, C)`` stage by stage and its persistence.

    :returns: ``(spread, slope)``: the within-stage std of every stage, mean over series and channels, shape
        ``(T // stage,)``; and the least-squares slope of a series' within-stage std at stage ``k + 1`` on that
        at stage ``k``, each centred on its channel's mean (pooled over stages and channels).
    """
    n, T, C = x.shape
    within = x.reshape(n, T // stage, stage, C).std(axis=2)  # (n, stages, C)
    centred = within - within.mean(axis=(0, 1))  # channels differ in spread: pool deviations, not levels
    a, b = centred[:, :-1].ravel(), centred[:, 1:].ravel()
    slope = float(np.cov(a, b)[0, 1] / a.var(ddof=1)) if T > stage else float("nan")
    return within.mean(axis=(0, 2)), slope


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cell", default="etth_stagediff_256", help="long-generation cell name (its .samples.pt)")
    p.add_argument("--dataset", default="etth")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-fid", action="store_true", help="skip the per-stage context-FID table")
    p.add_argument("--ts2vec-iterations", type=int, default=600, help="TS2Vec training steps (protocol: 600)")
    p.add_argument("--results", default=str(RESULTS / "long_generation"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    fake = torch.load(cached(Path(args.results) / f"{args.cell}.samples.pt"))
    fake = (fake.numpy() if torch.is_tensor(fake) else np.asarray(fake)).astype(np.float32)
    if fake.ndim != 3 or fake.shape[1] % STAGE:
        raise ValueError(f"expected series (n, T, C) with T a multiple of {STAGE}, got {fake.shape}")
    fmt = " ".join
    if not args.no_fid:
        stage_table(fake, args)
    real_long = get_dataset(args.dataset, length=fake.shape[1]).windows.float().numpy()
    print(f"\nvariation by time scale, per channel (real: {len(real_long)} windows of {fake.shape[1]} steps)")
    print("series | std inside a stage | std of stage means | std of one-step differences")
    for name, x in (("generated", fake), ("real", real_long)):
        within, between, fast = variation_scales(x)
        print(f"{name} | {fmt(f'{v:.3f}' for v in within)} | {fmt(f'{v:.3f}' for v in between)} | "
              f"{fmt(f'{v:.4f}' for v in fast)}")
    spread, slope = spread_persistence(fake)
    real_spread, real_slope = spread_persistence(real_long)
    short = spread / real_spread - 1
    added = [short[0]] + [short[k] - real_slope * short[k - 1] for k in range(1, len(short))]
    print("\nwithin-stage spread stage by stage (mean over channels)")
    print("series | spread per stage | persistence slope | shortfall per stage | added by the stage")
    print(f"generated | {fmt(f'{v:.4f}' for v in spread)} | {slope:.3f} | {fmt(f'{v:+.1%}' for v in short)} | "
          f"{fmt(f'{v:+.1%}' for v in added)}")
    print(f"real | {fmt(f'{v:.4f}' for v in real_spread)} | {real_slope:.3f} | | ")


def stage_table(fake, args):
    """Print per stage of ``fake`` its context-FID against the real 64-step windows and its statistics."""
    real = get_dataset(args.dataset, length=STAGE).windows.float().numpy()
    fmt = " ".join
    print(f"{args.cell}: {fake.shape[0]} series of {fake.shape[1]} steps; real: {len(real)} windows of {STAGE}")
    print("stage | context-FID | mean | std | std of differences")
    for s in range(fake.shape[1] // STAGE):
        part = fake[:, s * STAGE:(s + 1) * STAGE]
        fid = context_fid(real, part, repeats=args.repeats, seed=args.seed, iterations=args.ts2vec_iterations)
        mean, std, dstd = stage_statistics(part)
        print(f"{s + 1} | {fid.mean:.3f} | {fmt(f'{v:.3f}' for v in mean)} | {fmt(f'{v:.3f}' for v in std)} | "
              f"{fmt(f'{v:.4f}' for v in dstd)}", flush=True)
    mean, std, dstd = stage_statistics(real)
    print(f"real | | {fmt(f'{v:.3f}' for v in mean)} | {fmt(f'{v:.3f}' for v in std)} | "
          f"{fmt(f'{v:.4f}' for v in dstd)}")


if __name__ == "__main__":
    main()
