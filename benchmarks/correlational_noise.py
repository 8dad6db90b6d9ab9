"""How much of a generator's correlational score is subset noise: the score's distribution over seeds.

The correlational score (``pyroseq.metrics.correlational_score``, Diffusion-TS protocol) compares the pooled
cross-channel correlations of random fifths of the real and of the generated windows, 5 times. This script
recomputes the 5-repeat score over ``--seeds`` seeds for the real windows against a shuffled copy of
themselves (the noise of the protocol when the generator is the data) and for every saved sample set of the
generation benchmark (``benchmarks/.cache/generation/<stem>.samples.pt``), and prints the median, the
fraction of seeds that meet the published Diffusion-TS score at its 3 decimals, the benchmark's own seed,
and the whole-set difference of every channel pair's correlation (fake minus real: the bias that no
number of seeds averages away).

Command::

    python benchmarks/correlational_noise.py --dataset stocks      # seconds
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import RESULTS, cached  # noqa: E402
from generation import PUBLISHED, real_windows, shuffled  # noqa: E402

from pyroseq.metrics import correlational_score  # noqa: E402
from pyroseq.metrics.correlational import cross_correlations  # noqa: E402

__all__ = ["score_distribution"]


def score_distribution(real, fake, seeds, repeats=5):
    """The ``repeats``-repeat correlational score of ``fake`` against ``real`` for seeds ``0 .. seeds - 1``.

    :param torch.Tensor real: real windows ``(N, L, C)`` in [0, 1].
    :param torch.Tensor fake: generated windows ``(M, L, C)`` in [0, 1].
    :returns: array of shape ``(seeds,)``.
    """
    return np.array([correlational_score(real, fake, repeats=repeats, seed=s).mean for s in range(seeds)])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="stocks", choices=sorted(PUBLISHED))
    p.add_argument("--seeds", type=int, default=300)
    p.add_argument("--results", default=str(RESULTS / "generation"))
    args = p.parse_args(argv)
    real = real_windows(args.dataset)
    published = PUBLISHED[args.dataset]["correlational"]
    sets = {"real vs shuffled real": shuffled(real)}
    for path in sorted(cached(args.results).glob(f"{args.dataset}*.samples.pt")):
        saved = torch.load(path)
        if torch.is_tensor(saved):  # quality cells; speed cells hold dicts of samplers
            sets[path.name[: -len(".samples.pt")]] = saved
    print(f"{args.dataset}: correlational score (5 repeats) over {args.seeds} seeds; published {published:.3f}")
    print("| sample set | windows | median | seeds <= published (3 decimals) | seed 0 | whole-set pair bias |")
    print("|---|---|---|---|---|---|")
    reference = cross_correlations(real.numpy())
    for name, fake in sets.items():
        values = score_distribution(real, fake, args.seeds)
        bias = cross_correlations(fake.numpy()) - reference
        print(f"| {name} | {len(fake)} | {np.median(values):.4f} | {np.mean(values.round(3) <= published):.0%} | "
              f"{values[0]:.4f} | {' '.join(f'{b:+.3f}' for b in bias)} |")


if __name__ == "__main__":
    main()
