"""How context-FID depends on the number of generated windows it is computed from.

The field's protocol (Diffusion-TS) scores as many generated windows as there are real ones (17,165 on ETTh at
length 256); the long-sequence benchmark scores 2,000, to save CPU. The Frechet distance of estimated Gaussians
is biased upwards at small sample sizes, and very nearly linearly in 1/n (Chong & Forsyth, "Effectively Unbiased
FID and Inception Score and where to find them", CVPR 2020). This script measures that bias for a saved set of
generated series, without generating more: per repeat it trains one TS2Vec encoder on all real windows (as
:func:`pyroseq.metrics.context_fid` does), encodes all real and all generated windows, computes the Frechet
distance against all real windows from random subsets of ``n`` generated windows for every ``n`` of ``--sizes``
(``--draws`` subsets each, without replacement), fits ``FID(n) = FID_inf + k / n`` by least squares and reports
the fit at ``n = 2000`` and at ``n = N_real``. The same is done with subsets of the *real* windows in place of the
generated ones (a floor: a perfect generator at that sample size).

Command (about 7 CPU minutes per repeat at length 256)::

    python benchmarks/fid_sample_size.py --samples benchmarks/.cache/long_generation/etth_stagediff_256.samples.pt \\
        --dataset etth --length 256
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import CACHE, RESULTS, log, write_json  # noqa: E402

from pyroseq.data import get_dataset  # noqa: E402
from pyroseq.metrics.context_fid import _mean_cov, frechet_distance  # noqa: E402
from pyroseq.metrics.score import seeded  # noqa: E402
from pyroseq.metrics.ts2vec import encode_windows, train_ts2vec  # noqa: E402

__all__ = ["fid_by_size", "fit_inverse_n"]


def fid_by_size(rep_real, rep_fake, sizes, draws, rng):
    """Mean Frechet distance between all real representations ``rep_real`` ``(N_r, D)`` and random subsets of
    ``n`` rows of ``rep_fake`` ``(N_f, D)`` (``draws`` subsets without replacement, one if ``n = N_f``), for every
    ``n`` of ``sizes``; a dict ``n -> FID``."""
    stats_real = _mean_cov(rep_real)
    out = {}
    for n in sizes:
        k = 1 if n >= len(rep_fake) else draws
        values = [frechet_distance(*stats_real, *_mean_cov(rep_fake[rng.choice(len(rep_fake), n, replace=False)]))
                  for _ in range(k)]
        out[n] = float(np.mean(values))
    return out


def fit_inverse_n(by_size):
    """Least-squares fit ``FID(n) = a + b / n`` to a dict ``n -> FID``; returns ``(a, b)``."""
    n = np.array(sorted(by_size), dtype=np.float64)
    y = np.array([by_size[int(k)] for k in n])
    design = np.stack([np.ones_like(n), 1.0 / n], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(a), float(b)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", required=True, help="saved generated series (N, L, C) in [0, 1] (torch.save)")
    p.add_argument("--dataset", default="etth")
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--sizes", default="250,500,1000,2000")
    p.add_argument("--draws", type=int, default=4, help="random subsets per size below the full set")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0, help="the benchmark's seed: the same encoders as its cells")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON output (default: *.fid_by_size.json beside the samples, or "
                   "for samples in the benchmarks' cache, at the same place under the results)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    fake = torch.load(args.samples).float()
    real = get_dataset(args.dataset, length=args.length).windows.float()
    if fake.shape[1:] != real.shape[1:]:
        p.error(f"samples have shape {tuple(fake.shape)}, real windows {tuple(real.shape)}")
    if max(sizes) > len(fake):
        p.error(f"--sizes goes up to {max(sizes)} but there are {len(fake)} generated series")
    out = Path(args.out or str(args.samples).replace(".samples.pt", ".fid_by_size.json"))
    if args.out is None and out.resolve().is_relative_to(CACHE):
        out = RESULTS / out.resolve().relative_to(CACHE)
    rng = np.random.default_rng(args.seed)
    rows = []
    for r, repeat_seed in enumerate(np.random.SeedSequence(args.seed).generate_state(args.repeats)):
        t = time.time()
        with seeded(int(repeat_seed)):
            encoder = train_ts2vec(real, iterations=600, batch_size=8)
        rep_real, rep_fake = encode_windows(encoder, real), encode_windows(encoder, fake)
        rows.append(dict(fake=fid_by_size(rep_real, rep_fake, sizes, args.draws, rng),
                         real=fid_by_size(rep_real, rep_real, sizes, args.draws, rng)))
        log(f"repeat {r}: {rows[-1]} ({time.time() - t:.0f} s)")
        write_json(out, dict(samples=str(args.samples), dataset=args.dataset, length=args.length,
                             real_windows=len(real), sizes=sizes, draws=args.draws, repeats=rows))
    print(f"\n{args.dataset}, length {args.length}: context-FID against all {len(real)} real windows, from n windows "
          f"of {Path(args.samples).name} or of the real set (mean of {len(rows)} encoders; {args.draws} subsets per n)")
    print("| windows scored | " + " | ".join(f"n = {n}" for n in sizes)
          + " | fit at n = 2000 | fit at n = N_real | fit, n -> inf |")
    print("|---|" + "---|" * (len(sizes) + 3))
    for kind in ("fake", "real"):
        mean = {n: float(np.mean([row[kind][n] for row in rows])) for n in sizes}
        a, b = fit_inverse_n(mean)
        print(f"| {'generated' if kind == 'fake' else 'real'} | " + " | ".join(f"{mean[n]:.3f}" for n in sizes)
              + f" | {a + b / 2000:.3f} | {a + b / len(real):.3f} | {a:.3f} |")
    print(json.dumps({"out": str(out)}))


if __name__ == "__main__":
    main()
