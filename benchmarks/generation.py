"""DiM-TS generation benchmark at length 24 on Sines, Stocks and ETTh (the evaluation protocol of docs/design.md).

Tables printed (and written to ``<results>/summary.md``):

1. Quality: context-FID, correlational, discriminative and predictive scores (``pyroseq.metrics``, each
   repeated ``--repeats`` times, mean +- 95% t half-width) of DiM-TS sampled with Heun (``--num-steps 20``,
   i.e. 39 network evaluations) next to the published Diffusion-TS row. Data are min-max scaled to [0, 1]
   per channel over the whole series and cut into stride-1 windows; DiM-TS is trained on all windows
   (mapped to [-1, 1] inside the model) and generates as many windows as there are real ones.
   Acceptance: DiM-TS <= Diffusion-TS on at least 3 of the 4 metrics, per data set, compared at the 3 decimals
   the published scores are given with (the count at full precision is printed beside it). For Sines the
   table also scores a fresh draw of the true process (``--parts reference``): a perfect generator, i.e. the
   noise floor of each metric under this protocol. ``--parts reference`` also scores the predictive metric of
   the real windows themselves (train on real, test on real), a floor for any generator, and the correlational
   score of the real windows against a shuffled copy of themselves (its subset noise: the published
   correlational score of Stocks is below it).
2. Sampler speed with the same trained denoiser: Heun (<= 40 evaluations) vs 500-step DDPM ancestral
   sampling (the Diffusion-TS sampler), seconds per window (chunks of the two samplers interleaved, so
   both see the same machine load) and the discriminative score of each against the same random subset
   of real windows. Acceptance: Heun >= 10x faster per window at no worse discriminative score.

Training uses :func:`pyroseq.inference.fit` with a budget of CPU minutes of one thread (``--budget-minutes``,
default 60 per data set), checkpoints every 100 steps and resumes with the remaining budget. Every cell
writes a JSON file under the results directory after each finished part, and finished cells are skipped, so
the script can be re-run after an interruption. Weights, checkpoints and generated windows (saved in blocks) go
to the ignored cache ``benchmarks/.cache/`` in the layout of ``benchmarks/results/`` (see ``bench_common``).

Commands::

    python benchmarks/generation.py --quick                                   # smoke run (minutes)
    nohup python benchmarks/generation.py --budget-minutes 60 > benchmarks/.cache/generation.log 2>&1 &
    python benchmarks/generation.py --report                                  # tables of finished cells
"""

import argparse
import itertools
import sys
import time
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import (  # noqa: E402
    METRICS,
    RESULTS,
    BudgetClock,
    OutOfTime,
    cached,
    log,
    random_subset,
    read_json,
    read_training_meta,
    result_dict,
    score_cell,
    write_json,
)

from pyroseq import metrics  # noqa: E402
from pyroseq.data import get_dataset  # noqa: E402
from pyroseq.inference.checkpoint import save_checkpoint  # noqa: E402
from pyroseq.models import DiMTS  # noqa: E402

LENGTH = 24
DATASETS = ("sines", "stocks", "etth")
# Published Diffusion-TS at length 24 (Yuan and Qiao, ICLR 2024); sampled with 500 ancestral steps.
PUBLISHED = {
    "sines": dict(context_fid=0.006, correlational=0.015, discriminative=0.006, predictive=0.093),
    "stocks": dict(context_fid=0.147, correlational=0.004, discriminative=0.067, predictive=0.036),
    "etth": dict(context_fid=0.116, correlational=0.049, discriminative=0.061, predictive=0.119),
}
NET = dict(hidden_dim=64, d_state=16, num_encoder_layers=1, num_decoder_layers=2, num_lags=2)
TRUE_PROCESS_SEED = 12345  # seed of the fresh Sines draw that scores a perfect generator
GENERATION_BLOCK = 2048  # windows generated (and saved) per block; each block has its own seed
SPEED_SAMPLES = 1000  # windows per sampler in the speed comparison (default of --speed-samples)
# Heun sampler settings by name (``--variant``); "" is the plain deterministic sampler. "churn" adds Karras et
# al.'s stochastic steps only at mid noise levels (sigma in [0.05, 1]; gamma is capped at sqrt(2) - 1, which
# S_churn = 40 over 20 steps reaches): same 39 network evaluations. Chosen on a tuning draw (seed 555,
# 1000 windows) for Stocks, where plain Heun over-disperses the price level; full-range churn hurt Sines.
VARIANTS = {"": {}, "churn": dict(S_churn=40.0, S_min=0.05, S_max=1.0)}


def model_stem(dataset, aux=False):
    """File stem of a data set's trained model: ``stocks``, or ``stocks_aux`` with DiM-TS's multi-feature loss."""
    return f"{dataset}_aux" if aux else dataset


def cell_stem(dataset, variant, aux=False):
    """File stem of a data set's cells for a model and a sampler variant (``stocks``, ``stocks_churn``,
    ``stocks_aux``, ``stocks_aux_churn``)."""
    stem = model_stem(dataset, aux)
    return f"{stem}_{variant}" if variant else stem


def real_windows(dataset):
    """All stride-1 windows of the [0, 1]-scaled data set, float32, shape (N, 24, C)."""
    return get_dataset(dataset, length=LENGTH).windows.float().contiguous()


def shuffled(real):
    """``real`` in a fixed random order (seed ``TRUE_PROCESS_SEED``): scored against ``real`` it makes the
    correlational score draw different windows for the two sides, as it does for any independent fake set."""
    return real[torch.randperm(len(real), generator=torch.Generator().manual_seed(TRUE_PROCESS_SEED))]


# -- training ------------------------------------------------------------------------------------------------

def build(channels, args):
    return DiMTS(obs_dim=channels, length=LENGTH, objective=args.objective, num_steps=args.num_steps,
                 aux_losses=args.aux, data_range=(0.0, 1.0), ema_decay=args.ema_decay, **NET)


def trained_model(dataset, args, cache={}):
    """The DiM-TS model of a data set, trained under the CPU-time budget (resumable)."""
    if dataset in cache:
        return cache[dataset]
    from pyroseq.inference import fit

    x = real_windows(dataset)
    torch.manual_seed(args.seed)
    model = build(x.shape[-1], args)
    directory = Path(args.results) / "models"
    directory.mkdir(parents=True, exist_ok=True)
    stem = model_stem(dataset, args.aux)
    meta_path = directory / f"{stem}.json"
    weights, ckpt = cached(meta_path, ".pt"), cached(meta_path, ".ckpt")
    meta = read_training_meta(meta_path, weights, ckpt, stem)
    if meta is not None and meta.get("finished") and weights.exists():
        model.load_state_dict(torch.load(weights))
        log(f"{dataset}: loaded trained model ({meta['steps']} steps, {meta.get('cpu_seconds', 0) / 60:.1f} CPU min)")
    else:
        clock = BudgetClock(args.budget_minutes, meta)
        pyro.clear_param_store()
        state = {"step": 0, "loss": None}

        def callback(step, loss):
            state["step"] = step + 1
            state["loss"] = loss if state["loss"] is None else 0.99 * state["loss"] + 0.01 * loss
            cpu = clock.cpu()
            if (step + 1) % 100 == 0:
                write_json(meta_path, dict(steps=step + 1, cpu_seconds=cpu, seconds=clock.wall(),
                                           finished=False, loss=state["loss"]))
                log(f"{dataset}: step {step + 1} loss {state['loss']:.2f} ({cpu / 60:.1f} CPU min, "
                    f"{clock.wall() / 60:.1f} wall min)")
            clock.check()

        log(f"{dataset}: training on {tuple(x.shape)} windows, budget {args.budget_minutes} CPU min, "
            f"spent {clock.spent / 60:.1f}")
        try:
            fit(model, x, num_steps=10**7, batch_size=args.batch_size, seed=args.seed, lr=args.lr, clip_norm=1.0,
                ema_decay=args.ema_decay, checkpoint=str(ckpt), checkpoint_every=100, resume=True, progress=False,
                callback=callback)
        except OutOfTime:
            pass
        meta = dict(steps=state["step"], cpu_seconds=clock.cpu(), seconds=clock.wall(),
                    finished=True, loss=state["loss"], budget_minutes=args.budget_minutes,
                    budget_clock="process CPU time, 1 thread", batch_size=args.batch_size, lr=args.lr,
                    objective=args.objective, aux_losses=args.aux, ema_decay=args.ema_decay, net=NET,
                    channel_order=model.channel_order.tolist(),
                    parameters=sum(p.numel() for p in model.net.parameters()))
        torch.save(model.state_dict(), weights)
        write_json(meta_path, meta)
        log(f"{dataset}: trained {meta['steps']} steps in {meta['cpu_seconds'] / 60:.1f} CPU min "
            f"({meta['seconds'] / 60:.1f} wall min)")
    model.eval()
    cache.clear()  # keep one model in memory
    cache[dataset] = (model, meta)
    return cache[dataset]


# -- evaluation ----------------------------------------------------------------------------------------------

def generated_windows(model, num, path, args):
    """Heun samples in blocks of GENERATION_BLOCK windows, appended to ``path`` as they finish."""
    fake = torch.load(path) if Path(path).exists() else torch.empty(0, LENGTH, model.obs_dim)
    seconds = 0.0
    while len(fake) < num:
        block = len(fake) // GENERATION_BLOCK
        n = min(GENERATION_BLOCK, num - len(fake))
        t = time.time()
        new = model.generate(n, num_steps=args.num_steps, seed=args.seed * 1000 + block, **VARIANTS[args.variant])
        seconds += time.time() - t
        fake = torch.cat([fake, new.float()])
        torch.save(fake, path)
        log(f"{Path(path).stem}: generated {len(fake)}/{num} windows ({(time.time() - t) / n:.4f} s/window)")
    return fake, seconds


def quality_cell(dataset, args):
    path = Path(args.results) / f"{cell_stem(dataset, args.variant, args.aux)}.json"
    cell = read_json(path) or {}
    if all(m in cell.get("metrics", {}) for m in METRICS):
        return cell
    model, meta = trained_model(dataset, args)
    real = real_windows(dataset)
    num = len(real) if args.eval_samples is None else min(args.eval_samples, len(real))
    fake, seconds = generated_windows(model, num, cached(path, ".samples.pt"), args)
    if "generation" not in cell:
        cell.update(dataset=dataset, length=LENGTH, real_windows=len(real), fake_windows=num, train=meta,
                    generation=dict(sampler="heun", num_steps=args.num_steps, variant=args.variant,
                                    sampler_kwargs=VARIANTS[args.variant],
                                    function_evaluations=DiMTS.function_evaluations("heun", args.num_steps),
                                    seconds_per_window=seconds / num if seconds else None))
        write_json(path, cell)
    return score_cell(cell, path, real, fake, args, dataset)


def reference_cell(dataset, args):
    """Scores of a perfect generator: a fresh draw (another seed) of the true process, against the same real
    windows with the same metric settings. Only Sines has a known process; this is the metric's noise floor."""
    path = Path(args.results) / f"{dataset}_true_process.json"
    cell = read_json(path) or {}
    if dataset != "sines" or all(m in cell.get("metrics", {}) for m in METRICS):
        return cell
    real = real_windows(dataset)
    fresh = get_dataset(dataset, length=LENGTH, seed=TRUE_PROCESS_SEED).windows.float().contiguous()
    cell.update(dataset=dataset, length=LENGTH, real_windows=len(real), fake_windows=len(fresh),
                fake="true process, seed {}".format(TRUE_PROCESS_SEED))
    return score_cell(cell, path, real, fresh, args, f"{dataset} true process")


def real_predictive_cell(dataset, args):
    """Predictive score of the real windows themselves (train on real, test on real, the "original data" row of
    the Diffusion-TS tables): no generator trained on the real windows can be expected to predict them better."""
    path = Path(args.results) / f"{dataset}_real.json"
    cell = read_json(path) or {}
    if all(m in cell.get("metrics", {}) for m in ("predictive", "correlational")):
        return cell
    real = real_windows(dataset)
    cell.update(dataset=dataset, length=LENGTH, real_windows=len(real), fake="the real windows")
    score_cell(cell, path, real, real, args, f"{dataset} real data", names=("predictive",))
    # Real against a shuffled copy of itself: the subset noise of the correlational score.
    return score_cell(cell, path, real, shuffled(real), args, f"{dataset} real data", names=("correlational",))


def at_published_precision(value, published):
    """``value <= published`` once ``value`` is rounded to the published number's 3 decimals."""
    return round(value, 3) <= published


def speed_suffix(args):
    """Suffix of a speed cell: ``_speed`` for the run's default number of windows (:data:`SPEED_SAMPLES`; 32 with
    ``--quick``), ``_speed_nall`` for as many as real windows (``speed_samples = 0``: the quality cells' count),
    else ``_speed_n<k>``."""
    if args.speed_samples == args.default_speed_samples:
        return "_speed"
    return "_speed_nall" if args.speed_samples == 0 else f"_speed_n{args.speed_samples}"


def speed_cell(dataset, args):
    """Heun vs DDPM on the same trained denoiser: seconds per window and discriminative score of each. The two
    samplers take turns chunk by chunk (both see the same load); the finished chunks are saved atomically after
    each, so an interrupted run (500-step DDPM on all Stocks windows takes about an hour) resumes at the next."""
    path = Path(args.results) / f"{cell_stem(dataset, args.variant, args.aux)}{speed_suffix(args)}.json"
    cell = read_json(path) or {}
    if all(k in cell for k in ("heun", "ddpm")):
        return cell
    model, _ = trained_model(dataset, args)
    real = real_windows(dataset)
    num = len(real) if args.speed_samples == 0 else min(args.speed_samples, len(real))
    subset = random_subset(real, num, args.seed)
    samples = cached(path, ".samples.pt")
    if samples.exists():
        saved = torch.load(samples)
    else:
        chunk = model.sample_chunk_size
        partial = cached(path, ".samples.partial.pt")
        state = torch.load(partial) if partial.exists() else dict(parts={"heun": [], "ddpm": []},
                                                                   seconds={"heun": 0.0, "ddpm": 0.0})
        parts, seconds = state["parts"], state["seconds"]
        steps = {"heun": args.num_steps, "ddpm": args.ddpm_steps}
        for i, start in enumerate(range(0, num, chunk)):
            if i < len(parts["ddpm"]):
                continue  # done before an interruption
            n = min(chunk, num - start)
            for sampler in ("heun", "ddpm"):
                t = time.perf_counter()
                extra = VARIANTS[args.variant] if sampler == "heun" else {}
                parts[sampler].append(model.generate(n, sampler=sampler, num_steps=steps[sampler], chunk_size=chunk,
                                                     seed=args.seed * 1000 + i, **extra))
                seconds[sampler] += time.perf_counter() - t
            save_checkpoint(partial, state)
            log(f"{dataset} speed: {start + n}/{num} windows, heun {seconds['heun']:.1f} s, "
                f"ddpm {seconds['ddpm']:.1f} s")
        saved = {s: dict(samples=torch.cat(parts[s]).float(), seconds_per_window=seconds[s] / num,
                         num_steps=steps[s], function_evaluations=DiMTS.function_evaluations(s, steps[s]))
                 for s in parts}
        save_checkpoint(samples, saved)
        partial.unlink(missing_ok=True)
    for sampler in ("heun", "ddpm"):
        if sampler in cell:
            continue
        t = time.time()
        result = metrics.discriminative_score(subset, saved[sampler]["samples"], repeats=args.repeats, seed=args.seed,
                                              iterations=args.disc_iterations)
        cell[sampler] = dict(num_steps=saved[sampler]["num_steps"],
                             function_evaluations=saved[sampler]["function_evaluations"],
                             seconds_per_window=saved[sampler]["seconds_per_window"], windows=num,
                             discriminative=result_dict(result, time.time() - t))
        write_json(path, cell)
        log(f"{dataset} speed: {sampler} discriminative = {result}")
    cell["speedup"] = cell["ddpm"]["seconds_per_window"] / cell["heun"]["seconds_per_window"]
    write_json(path, cell)
    return cell


# -- report --------------------------------------------------------------------------------------------------

def run_cells(dataset, suffix, args):
    """``(aux, variant, cell)`` of every model and sampler variant of a data set whose ``<stem><suffix>.json`` cell
    exists; the default one (plain model, plain Heun) always, as an empty dict if it has not run."""
    for aux, variant in itertools.product((False, True), VARIANTS):
        cell = read_json(Path(args.results) / f"{cell_stem(dataset, variant, aux)}{suffix}.json")
        if cell is not None or not (variant or aux):
            yield aux, variant, cell or {}


def fmt(entry):
    return f"{entry['mean']:.3f} ± {entry['ci']:.3f}" if entry else "n/a"


def report(args):
    lines = ["## Generation at length 24 (DiM-TS, Heun with "
             f"{DiMTS.function_evaluations('heun', args.num_steps)} network evaluations)", "",
             "| data set | model | context-FID | correlational | discriminative | predictive | <= Diffusion-TS |",
             "|---|---|---|---|---|---|---|"]
    for dataset in args.datasets:
        pub = PUBLISHED[dataset]
        for aux, variant, cell in run_cells(dataset, "", args):
            got = cell.get("metrics", {})
            # Published scores have 3 decimals, so ours are compared at that precision; full precision beside.
            wins = [at_published_precision(got[m]["mean"], pub[m]) for m in METRICS if m in got]
            strict = sum(got[m]["mean"] <= pub[m] for m in METRICS if m in got)
            verdict = (f"{sum(wins)}/{len(wins)}" + (" (pass)" if sum(wins) >= 3 else " (fail)" if len(wins) == 4
                                                     else "")
                       + f" [{strict}/{len(wins)} at full precision]" if wins else "n/a")
            train = cell.get("train") or {}
            label = (f"DiM-TS (ours, {train.get('steps', '?')} steps, {train.get('cpu_seconds', 0) / 60:.0f} CPU min"
                     + (", multi-feature loss" if aux else "")
                     + (f", Heun {variant}: {VARIANTS[variant]}" if variant else "") + ")")
            lines.append(f"| {dataset} | {label} | " + " | ".join(fmt(got.get(m)) for m in METRICS)
                         + f" | {verdict} |")
        lines.append(f"| {dataset} | Diffusion-TS (published) | " + " | ".join(f"{pub[m]:.3f}" for m in METRICS)
                     + " | |")
        own = (read_json(Path(args.results) / f"{dataset}_real.json") or {}).get("metrics", {})
        if own:
            lines.append(f"| {dataset} | real windows (predictive: train on real, test on real; correlational: "
                         f"real vs shuffled real) | n/a | {fmt(own.get('correlational'))} | n/a | "
                         f"{fmt(own.get('predictive'))} | |")
        floor = (read_json(Path(args.results) / f"{dataset}_true_process.json") or {}).get("metrics", {})
        if floor:
            lines.append(f"| {dataset} | true process (fresh draw, seed {TRUE_PROCESS_SEED}) | "
                         + " | ".join(fmt(floor.get(m)) for m in METRICS) + " | |")
    lines += ["", "## Sampler speed with the same trained denoiser", "",
              "| data set | sampler | evaluations | s / window | discriminative | speed-up | accept |",
              "|---|---|---|---|---|---|---|"]
    for dataset in args.datasets:
        for (aux, variant, cell), suffix in itertools.product(run_cells(dataset, "_speed", args), ("", "_nall")):
            if suffix:  # the same comparison on as many windows as real ones, if run (--speed-samples all)
                cell = read_json(Path(args.results) / f"{cell_stem(dataset, variant, aux)}_speed{suffix}.json")
                if cell is None:
                    continue
            for sampler in ("heun", "ddpm"):
                name = f"{sampler} {variant}".strip() if sampler == "heun" else sampler
                name += (" (aux model)" if aux else "") + (", all windows" if suffix else "")
                entry = cell.get(sampler)
                if entry is None:
                    lines.append(f"| {dataset} | {name} | n/a | n/a | n/a | | |")
                    continue
                speed = accept = ""
                if sampler == "heun" and "speedup" in cell:
                    speed = f"{cell['speedup']:.1f}x"
                    ok = (cell["speedup"] >= 10
                          and entry["discriminative"]["mean"] <= cell["ddpm"]["discriminative"]["mean"])
                    accept = "pass" if ok else "fail"
                lines.append(f"| {dataset} | {name} | {entry['function_evaluations']} | "
                             f"{entry['seconds_per_window']:.4f} | {fmt(entry['discriminative'])} | {speed} | "
                             f"{accept} |")
    text = "\n".join(lines)
    print(text)
    Path(args.results).mkdir(parents=True, exist_ok=True)
    (Path(args.results) / "summary.md").write_text(text + "\n")


def parse_args(argv=None):
    """The benchmark's settings from the command line ``argv`` (``--quick`` shrinks them; results directory
    filled in)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--parts", default="quality,speed,reference",
                   help="comma list of quality, speed, reference (Sines only: scores of the true process)")
    p.add_argument("--budget-minutes", type=float, default=60.0, help="training budget per data set (CPU minutes)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--objective", default="edm", choices=("edm", "bound"))
    p.add_argument("--aux", action="store_true", help="add DiM-TS's Fourier and correlation-MMD loss terms")
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--num-steps", type=int, default=20, help="Heun steps (2 n - 1 network evaluations)")
    p.add_argument("--variant", default="", choices=list(VARIANTS),
                   help="Heun sampler settings (VARIANTS); cells are written as <dataset>_<variant>*.json")
    p.add_argument("--ddpm-steps", type=int, default=500)
    p.add_argument("--eval-samples", type=int, default=None, help="generated windows (default: as many as real)")
    p.add_argument("--speed-samples", default=str(SPEED_SAMPLES),
                   help="windows per sampler in the speed comparison: a number or 'all' (as many as real windows, "
                        "as the quality cells; written as <stem>_speed_nall.json)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ts2vec-iterations", type=int, default=600)
    p.add_argument("--disc-iterations", type=int, default=2000)
    p.add_argument("--pred-iterations", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", default=None)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny budget, few samples and iterations")
    p.add_argument("--report", action="store_true", help="only print the tables of finished cells")
    args = p.parse_args(argv)
    args.datasets = [d.strip().lower() for d in args.datasets.split(",") if d.strip()]
    unknown = set(args.datasets) - set(DATASETS)
    if unknown:
        p.error(f"unknown data sets {sorted(unknown)}; choose from {DATASETS}")
    args.default_speed_samples = 32 if args.quick else SPEED_SAMPLES
    if args.speed_samples == "all":
        args.speed_samples = 0  # as many as real windows
    elif not args.speed_samples.isdigit() or int(args.speed_samples) < 1:
        p.error(f"--speed-samples must be a positive number or 'all', got {args.speed_samples!r}")
    else:
        args.speed_samples = int(args.speed_samples)
    if args.quick:
        args.budget_minutes = min(args.budget_minutes, 0.5)
        args.eval_samples, args.repeats = 256, 2
        if args.speed_samples == SPEED_SAMPLES:
            args.speed_samples = args.default_speed_samples
        args.ts2vec_iterations, args.disc_iterations, args.pred_iterations = 20, 50, 50
        args.ddpm_steps = min(args.ddpm_steps, 100)
    args.results = args.results or str(RESULTS / ("generation_quick" if args.quick else "generation"))
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.report:
        parts = {s.strip() for s in args.parts.split(",")}
        for dataset in args.datasets:
            if "quality" in parts:
                quality_cell(dataset, args)
            if "speed" in parts:
                speed_cell(dataset, args)
            if "reference" in parts:
                reference_cell(dataset, args)
                real_predictive_cell(dataset, args)
    report(args)


if __name__ == "__main__":
    main()
