"""Sampler settings of the trained Stocks DiM-TS: where each one puts the price level and the volume.

On Stocks the deterministic Heun sampler loses the speed criterion of the generation benchmark to 500-step
DDPM on the same denoiser. This script asks whether that is discretisation or the probability-flow ODE of the
learned denoiser itself. It loads the Stocks model of ``benchmarks/generation.py``
(``benchmarks/.cache/generation/models``; ``--aux`` for the multi-feature one), generates ``--num`` windows
(seed 555, the tuning draw, disjoint from the benchmark's seed 0) with every sampler setting given, and prints
per setting: the bias (fake minus real, whole set) of the mean and standard deviation of the price channel
(Open; the other prices follow it) and of Volume, the share of windows whose mean price is above 0.6 (the
sparse high-price years the plain ODE over-fills), the whole-set price–volume correlation bias, and with
``--discriminative`` the 5-repeat discriminative score against a random real subset of the same size.

Settings are JSON dicts of keyword arguments of ``DiMTS.generate``: ``sampler`` (``"heun"`` or ``"ddpm"``),
``num_steps``, ``sigma_max``, ``sigma_data`` (None: the plain EDM ODE), ``rho`` and Heun's ``S_churn``,
``S_min``, ``S_max``, ``S_noise``. Command (1-2 CPU minutes per Heun setting, 15 for DDPM, +2 with
``--discriminative``)::

    python benchmarks/stocks_sampler.py '{}' '{"num_steps": 40}' '{"sigma_data": null}' '{"rho": 3}' \\
        '{"S_churn": 40, "S_min": 1, "S_max": 80}' '{"S_churn": 40, "S_min": 0.05, "S_max": 1}' \\
        '{"S_churn": 80, "S_min": 0, "S_max": 1e9}' '{"sampler": "ddpm"}'
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import generation  # noqa: E402
from bench_common import random_subset  # noqa: E402

from pyroseq import metrics  # noqa: E402
from pyroseq.metrics.correlational import cross_correlations  # noqa: E402

__all__ = ["level_statistics"]

TUNING_SEED = 555
PRICE, VOLUME = 0, 5  # Open and Volume columns of the Stocks data
HIGH_PRICE = 0.6


def level_statistics(x):
    """Summary of Stocks windows ``x`` of shape ``(n, L, 6)`` in [0, 1]: a dict of the whole-set mean and
    standard deviation of the price and volume channels, the share of windows whose mean price exceeds
    ``HIGH_PRICE``, and the pooled price–volume correlation."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(-1, x.shape[-1])
    pairs = list(zip(*np.triu_indices(x.shape[-1], k=1)))  # the order of cross_correlations
    return dict(price_mean=flat[:, PRICE].mean(), price_std=flat[:, PRICE].std(),
                volume_mean=flat[:, VOLUME].mean(), volume_std=flat[:, VOLUME].std(),
                high_share=(x[:, :, PRICE].mean(1) > HIGH_PRICE).mean(),
                price_volume=cross_correlations(x)[pairs.index((PRICE, VOLUME))])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("settings", nargs="*", default=["{}"], help="JSON dicts of DiMTS.generate arguments")
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--aux", action="store_true", help="the model trained with the multi-feature loss")
    p.add_argument("--discriminative", action="store_true", help="also score each setting (5 repeats)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    settings = [json.loads(s) for s in args.settings]
    if not all(isinstance(s, dict) for s in settings):
        p.error("every setting must be a JSON object, e.g. '{\"num_steps\": 40}'")
    # The benchmark's own settings, so the model found is the one it trained.
    bench = generation.parse_args(["--datasets", "stocks"] + (["--aux"] if args.aux else []))
    model, meta = generation.trained_model("stocks", bench)
    real = generation.real_windows("stocks")
    subset = random_subset(real, args.num, TUNING_SEED)
    ref = level_statistics(real.numpy())
    print(f"Stocks DiM-TS{' (multi-feature loss)' if args.aux else ''}, {meta['steps']} steps; {args.num} windows "
          f"per setting, seed {TUNING_SEED}; biases are fake minus real")
    print("| setting | evaluations | price mean | price std | volume mean | volume std | windows with mean price "
          f"> {HIGH_PRICE} | price–volume corr. | discriminative |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kw in settings:
        kw = dict(kw)
        sampler = kw.pop("sampler", "heun")
        steps = kw.get("num_steps", bench.num_steps if sampler == "heun" else bench.ddpm_steps)
        kw["num_steps"] = steps
        t = time.time()
        x = model.generate(args.num, sampler=sampler, seed=TUNING_SEED, **kw).float()
        s = level_statistics(x.numpy())
        disc = ""
        if args.discriminative:
            disc = str(metrics.discriminative_score(subset, x, repeats=bench.repeats, seed=bench.seed,
                                                    iterations=bench.disc_iterations))
        label = json.dumps(dict(sampler=sampler, **kw) if sampler != "heun" else kw)
        print(f"| {label} | {model.function_evaluations(sampler, steps)} | {s['price_mean'] - ref['price_mean']:+.3f} "
              f"| {s['price_std'] - ref['price_std']:+.3f} | {s['volume_mean'] - ref['volume_mean']:+.3f} "
              f"| {s['volume_std'] - ref['volume_std']:+.3f} | {s['high_share']:.3f} "
              f"| {s['price_volume'] - ref['price_volume']:+.3f} | {disc} |  ({time.time() - t:.0f} s)", flush=True)
    print(f"| real windows | | {ref['price_mean']:.3f} | {ref['price_std']:.3f} | {ref['volume_mean']:.3f} "
          f"| {ref['volume_std']:.3f} | {ref['high_share']:.3f} | {ref['price_volume']:.3f} | |")


if __name__ == "__main__":
    main()
