"""Long-sequence generation benchmark: Stage-Diff (and DiM-TS, if available) on ETTh and Stocks.

Tables printed (and written to ``benchmarks/results/long_generation[_quick]/summary.md``):

1. Quality at lengths 64, 128, 256: context-FID, correlational, discriminative and predictive scores
   (``pyroseq.metrics``, protocol of docs/design.md: data min-max scaled to [0, 1] per channel, models trained in
   [-1, 1] on stride-1 windows) for Stage-Diff and DiM-TS next to the published Diffusion-TS long-sequence
   numbers (ETTh only; Diffusion-TS samples with 500 ancestral steps).
2. Ablation on ETTh 256: without staging (one 256-step stage), without decomposition, without
   cross-stage fusion (no history handed between stages).
3. Generation seconds per sample at lengths 64, 128, 256 and 1024 (linear growth check:
   time(1024) <= 1.3 * 16 * time(64)).
4. Stage boundaries: discriminative score of generated windows straddling a stage boundary vs windows
   inside a stage (both against real windows), for 256- and 1024-step series (check: straddle <= inside
   + 0.02).

The main rows come from ``--variant`` (default ``carry_mean_high_noise``, StageDiff's default configuration:
decoder ``carry="residual_and_mean"``, EDM noise levels ``(-0.6, 1.2)``); the first runs' decoder
(``stagediff``) is shown beside it. One Stage-Diff model per data set (stages of 64 steps, trained on
2-stage windows of 128 steps with a budget of CPU minutes) generates all lengths; one DiM-TS per data set,
trained on 256-step windows with the same budget, gives the DiM-TS columns (its 64- and 128-step series are
prefixes of 256-step ones). Every
cell writes a JSON file under the results directory and finished cells (and finished metrics inside a
cell) are skipped, so the script can be re-run after an interruption; model training checkpoints every
100 steps and resumes with the remaining budget. Weights, checkpoints and generated series go to the ignored
cache ``benchmarks/.cache/`` in the layout of ``benchmarks/results/`` (see ``bench_common``); a fresh clone
trains again.

Commands::

    python benchmarks/long_generation.py --quick                # smoke run (minutes)
    nohup python benchmarks/long_generation.py --budget-minutes 60 > benchmarks/.cache/long_generation.log 2>&1 &
    python benchmarks/long_generation.py --report               # print the tables of finished cells
    python benchmarks/long_generation.py --variant stagediff --parts quality,timing,boundary
                                                                # the main rows from another Stage-Diff variant

Evaluation generates ``--eval-samples`` series per cell (the protocol generates as many as there are
real windows; ~17,000 series of 256 steps per cell do not fit the CPU budget). Context-FID, correlational
and predictive scores use all real stride-1 windows; the discriminative score uses a random subset of
real windows of the same size as the generated set (balanced train/test splits).
"""

import argparse
import itertools
import math
import os
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
    parse_choices,
    random_subset,
    read_json,
    read_training_meta,
    score_cell,
    write_json,
)

from pyroseq import metrics  # noqa: E402
from pyroseq.data import get_dataset  # noqa: E402
from pyroseq.inference.checkpoint import save_checkpoint  # noqa: E402
from pyroseq.models import StageDiff  # noqa: E402

STAGE = 64
LENGTHS = (64, 128, 256)
TIMING_LENGTHS = (64, 128, 256, 1024)
# Published Diffusion-TS long-sequence scores on ETTh (Yuan and Qiao, ICLR 2024).
PUBLISHED = {
    ("etth", 64): dict(context_fid=0.631, correlational=0.082, discriminative=0.106, predictive=0.116),
    ("etth", 128): dict(context_fid=0.787, correlational=0.088, discriminative=0.144, predictive=0.110),
    ("etth", 256): dict(context_fid=0.423, correlational=0.064, discriminative=0.060, predictive=0.109),
}
NET = dict(patch_size=4, d_model=64, num_heads=4, num_encoder_layers=2, kernel_sizes=(5, 3, 1), fusion_dim=16,
           fusion_kernel_size=5)
# EDM's noise levels, with which every variant but the *_noise ones was trained (StageDiff's default is now
# carry_mean_high_noise's (-0.6, 1.2)).
EDM_NOISE = (-1.2, 1.2)
# The decoder of the first runs (carry="residual"), pinned in every variant trained with it so that their saved
# models stay loadable whatever StageDiffNet's default (and their unfinished runs resume as they started).
FIRST = dict(stage_length=STAGE, carry="residual", edm_noise=EDM_NOISE)
# The decoder that keeps the stage's common part (level, conditioning) in the carried state (StageDiffNet's default).
CARRY_MEAN = dict(stage_length=STAGE, carry="residual_and_mean", edm_noise=EDM_NOISE)
VARIANTS = {  # name -> (StageDiff keyword arguments, training window length)
    "stagediff": (FIRST, 2 * STAGE),
    "no_staging": (dict(FIRST, stage_length=256), 256),
    "no_decomposition": (dict(FIRST, decomposition=False), 2 * STAGE),
    "no_fusion": (dict(FIRST, fusion="none"), 2 * STAGE),
    "channel_independent_fusion": (dict(FIRST, fusion="independent"), 2 * STAGE),
    # Same model trained on 4-stage windows (256 steps): 3 of 4 stages learn from a history, and every
    # batch holds 256 steps of slow variation (half the steps fit in the budget).
    "four_stage_windows": (FIRST, 4 * STAGE),
    # Same model trained on the continuous-time bound (likelihood weighting of the noise levels, which puts
    # more weight on the low noise levels that decide fine detail) instead of EDM's loss.
    "bound_objective": (dict(FIRST, objective="bound"), 2 * STAGE),
    # The Stage-Diff model trained with both cores for 60 wall minutes (see WHOLE_MACHINE); only run it with
    # nothing else on the machine (the load averages at start and end are saved with the model).
    "whole_machine": (FIRST, 2 * STAGE),
    # Decoder variants that keep the stage's common part (level, conditioning) in the carried state, and
    # also let every decoder layer read the history at all scales.
    "carry_mean": (CARRY_MEAN, 2 * STAGE),
    "carry_mean_all_history": (dict(CARRY_MEAN, history_attention="all"), 2 * STAGE),
    # carry_mean trained like whole_machine (2 threads, 60 wall minutes, idle machine).
    "carry_mean_whole_machine": (CARRY_MEAN, 2 * STAGE),
    # carry_mean with a cosine learning-rate decay over the budget (see FIT_KWARGS).
    "carry_mean_cosine": (CARRY_MEAN, 2 * STAGE),
    "carry_mean_cosine_whole_machine": (CARRY_MEAN, 2 * STAGE),
    # carry_mean with shorter moving averages in the decoder (windows of 12, 8 and 4 steps instead of 20, 12
    # and 4): the decomposed model is under-dispersed where the undecomposed one is not, so smooth less.
    "carry_mean_short_trends": (dict(CARRY_MEAN, kernel_sizes=(3, 2, 1)), 2 * STAGE),
    # carry_mean with EDM's noise levels moved down (log-normal P_mean -1.8 instead of -1.2): the low noise
    # levels, which decide the fast variation every variant lacks, are trained about twice as often.
    "carry_mean_low_noise": (dict(CARRY_MEAN, edm_noise=(-1.8, 1.2)), 2 * STAGE),
    # The other way (P_mean -0.6): carry_mean_low_noise made the conditioned stages calmer still (spread shortfall
    # -21% against -14% at stage 4), so the levels that decide a stage's spread given its history are the higher ones.
    # Passes ETTh 256 (FID 0.366, discriminative 0.040): StageDiff's defaults (carry and edm_noise) are now these.
    "carry_mean_high_noise": (dict(CARRY_MEAN, edm_noise=(-0.6, 1.2)), 2 * STAGE),
}
# The main rows' variant: StageDiff's default configuration (decoder carry and EDM noise levels).
DEFAULT_VARIANT = "carry_mean_high_noise"
# Variants trained with other optimiser settings: fit's arguments. carry_mean_cosine anneals the learning rate
# on a cosine to 5% over 3,400 steps (about what 60 CPU minutes buy), instead of keeping it constant.
# carry_mean_cosine_whole_machine does the same with both cores over 4,800 steps (about what 60 idle wall minutes buy).
FIT_KWARGS = {"carry_mean_cosine": dict(num_steps=3400, lr_decay=0.05),
              "carry_mean_cosine_whole_machine": dict(num_steps=4800, lr_decay=0.05)}
# Variants trained on a wall-clock budget with several threads instead of CPU time of one thread.
WHOLE_MACHINE = {"whole_machine": 2, "carry_mean_whole_machine": 2, "carry_mean_cosine_whole_machine": 2}
# Shown in the ablation table if run.
EXTRA_VARIANTS = ("channel_independent_fusion", "four_stage_windows", "bound_objective", "whole_machine", "carry_mean",
                  "carry_mean_all_history", "carry_mean_whole_machine", "carry_mean_cosine",
                  "carry_mean_cosine_whole_machine", "carry_mean_short_trends", "carry_mean_low_noise",
                  "carry_mean_high_noise")
ABLATIONS = ("no_staging", "no_decomposition", "no_fusion")


def training_windows(dataset, length):
    """Stride-1 windows of the [0, 1]-scaled series, mapped to [-1, 1] for training."""
    return get_dataset(dataset, length=length).windows * 2 - 1


# -- models ------------------------------------------------------------------------------------------------

def model_name(variant, tau):
    """File name stem of a Stage-Diff variant (or of its timing / boundary cell): ``variant``, plus ``_hn<tau>``
    with history noise tau > 0."""
    return variant if tau == 0 else f"{variant}_hn{tau:g}"


DEFAULT_HEUN_STEPS = 20


def cell_name(variant, tau, guidance=1.0, num_steps=DEFAULT_HEUN_STEPS):
    """File name stem of a cell generated by a Stage-Diff variant: :func:`model_name`, plus ``_g<w>`` when the
    series are sampled with history guidance w != 1 (``StageDiff.generate(guidance=w)``), plus ``_s<n>`` when
    they are sampled with n != 20 Heun steps."""
    return (model_name(variant, tau) + ("" if guidance == 1 else f"_g{guidance:g}")
            + ("" if num_steps == DEFAULT_HEUN_STEPS else f"_s{num_steps}"))


# Rows of a report per model: the 2,000-series cell, and the protocol's cell (as many series as real windows) if run.
PROTOCOL_ROWS = (("", ""), ("_nall", ", as many series as real windows"))
# Generated series per quality cell. The field's protocol scores as many as there are real windows (17,165 on ETTh
# at 256 steps; ``--eval-samples all``); 2,000 saves CPU, but context-FID is biased upwards at small samples
# (``benchmarks/fid_sample_size.py``).
DEFAULT_EVAL_SAMPLES = 2000


def samples_suffix(args):
    """Suffix of a quality cell scored on ``args.eval_samples`` generated series: none for the run's default (2,000;
    100 with ``--quick``), ``_nall`` for as many as real windows (``eval_samples = 0``), else ``_n<k>``."""
    if args.eval_samples == args.default_eval_samples:
        return ""
    return "_nall" if args.eval_samples == 0 else f"_n{args.eval_samples}"


def part_stem(part, variant):
    """File name stem of a timing or boundary cell (``part``) of a Stage-Diff variant, before the sampler
    suffixes of :func:`cell_name`: ``part`` for ``stagediff``, else ``part_<variant>``."""
    return part if variant == "stagediff" else f"{part}_{variant}"


def settings_rows(args):
    """(tau, guidance, Heun steps, label) of the Stage-Diff settings a report shows: the current ones first, then
    the plain sampler of the same model and the first runs (tau = 0, w = 1, 20 steps), each once."""
    rows = []
    for setting in ((args.history_noise, args.guidance, args.num_steps),
                    (args.history_noise, 1.0, DEFAULT_HEUN_STEPS), (0.0, 1.0, DEFAULT_HEUN_STEPS)):
        if setting not in [row[:3] for row in rows]:
            tau, w, n = setting
            name = "Stage-Diff" + ("" if args.variant == "stagediff" else f" `{args.variant}`")
            rows.append(setting + (f"{name} (τ={tau:g}" + ("" if w == 1 else f", w={w:g}")
                                   + ("" if n == DEFAULT_HEUN_STEPS else f", {n} Heun steps") + ")",))
    return rows


def variant_options(variant):
    """StageDiff keyword arguments of a variant other than the network's, and its network (:data:`NET` with the
    variant's overrides)."""
    kwargs, _ = VARIANTS[variant]
    net = {key: kwargs.get(key, value) for key, value in NET.items()}
    return {key: value for key, value in kwargs.items() if key not in NET}, net


def build(variant, channels, args):
    kwargs, net = variant_options(variant)
    kwargs = {"objective": args.objective, **kwargs}  # a variant may fix its own objective
    return StageDiff(obs_dim=channels, num_steps=args.num_steps, history_noise=args.history_noise, **kwargs, **net)


def train(model, x, name, args, extra_meta=None, threads=None, fit_kwargs=None):
    """Train with :func:`pyroseq.inference.fit` under a CPU-time budget; resumable. Returns metadata.

    With ``threads`` the model trains with that many torch threads on a wall-clock budget (the whole machine,
    which must be otherwise idle; the 1-minute load averages at start and end are saved in the metadata).
    ``fit_kwargs`` override fit's arguments (e.g. ``num_steps`` and ``lr_decay`` for a learning-rate schedule;
    by default the budget alone ends training) and are saved in the metadata."""
    from pyroseq.inference.fit import fit

    directory = Path(args.results) / "models"
    directory.mkdir(parents=True, exist_ok=True)
    meta_path = directory / f"{name}.json"
    weights, ckpt = cached(meta_path, ".pt"), cached(meta_path, ".ckpt")
    meta = read_training_meta(meta_path, weights, ckpt, name)
    if meta is not None and meta.get("finished") and weights.exists():
        model.load_state_dict(torch.load(weights))
        log(f"{name}: loaded trained model ({meta['steps']} steps, {meta.get('cpu_seconds', 0) / 60:.1f} CPU min)")
        return meta
    clock = BudgetClock(args.budget_minutes, meta, clock="wall" if threads else "cpu")
    unit = "wall" if threads else "CPU"
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    load_start = os.getloadavg()[0]
    pyro.clear_param_store()
    state = {"step": 0}

    def callback(step, loss):
        state["step"] = step + 1
        cpu = clock.cpu()
        if (step + 1) % 100 == 0:
            write_json(meta_path, dict(steps=step + 1, cpu_seconds=cpu, seconds=clock.wall(), finished=False,
                                       loss=loss))
            log(f"{name}: step {step + 1} loss {loss:.2f} ({cpu / 60:.1f} CPU min, {clock.wall() / 60:.1f} "
                f"wall min)")
        clock.check()

    log(f"{name}: training on {tuple(x.shape)} windows, budget {args.budget_minutes} {unit} min, "
        f"spent {(clock.wall() if threads else clock.spent) / 60:.1f}")
    try:
        options = dict(num_steps=10**7, batch_size=args.batch_size, seed=args.seed, lr=args.lr, clip_norm=1.0,
                       ema_decay=0.999)
        options.update(fit_kwargs or {})  # by default only the budget ends training
        fit(model, x, checkpoint=str(ckpt), checkpoint_every=100, resume=True, progress=False, callback=callback,
            **options)
    except OutOfTime:
        pass
    finally:
        torch.set_num_threads(previous_threads)
    budget_clock = f"wall time, {threads} threads" if threads else "process CPU time, 1 thread"
    if threads:
        extra_meta = dict(extra_meta or {}, load_average_start=load_start, load_average_end=os.getloadavg()[0])
    meta = dict(steps=state["step"], cpu_seconds=clock.cpu(), seconds=clock.wall(),
                finished=True, budget_minutes=args.budget_minutes, budget_clock=budget_clock,
                batch_size=args.batch_size, lr=args.lr, window=tuple(x.shape[1:]), **(fit_kwargs or {}),
                **(extra_meta or {}))
    torch.save(model.state_dict(), weights)
    write_json(meta_path, meta)
    log(f"{name}: trained {meta['steps']} steps in {meta['cpu_seconds'] / 60:.1f} CPU min "
        f"({meta['seconds'] / 60:.1f} wall min)")
    return meta


def trained_stagediff(dataset, variant, args, cache={}):
    key = (dataset, variant)
    if key not in cache:
        _, window = VARIANTS[variant]
        x = training_windows(dataset, window)
        torch.manual_seed(args.seed)
        model = build(variant, x.shape[-1], args)
        kwargs, net = variant_options(variant)
        decoder = dict(carry=model.net.carry, history_attention=model.net.history_attention)
        name = f"{dataset}_{model_name(variant, args.history_noise)}"
        meta = train(model, x, name, args,
                     extra_meta=dict(kwargs, objective=model.objective, net=net, variant=variant,
                                     history_noise=args.history_noise, **decoder), threads=WHOLE_MACHINE.get(variant),
                     fit_kwargs=FIT_KWARGS.get(variant))
        # Decoder options change no parameter, so weights of one load into the other: refuse that. Models
        # saved before the options existed were trained with the defaults of then.
        then = (("carry", "residual"), ("history_attention", "scale"))
        saved = {key: meta.get(key, default) for key, default in then}
        if saved != decoder:
            raise ValueError(f"{name}: the saved model was trained with decoder {saved}, this run builds {decoder}")
        model.eval()
        cache.clear()  # keep one model in memory
        cache[key] = (model, meta)
    return cache[key]


DIMTS_NET = dict(hidden_dim=64, d_state=16, num_encoder_layers=1, num_decoder_layers=2, num_lags=2)


def trained_dimts(dataset, args, cache={}):
    """One DiM-TS per data set, trained on windows of the longest length (256); the shorter lengths are the
    first 64 or 128 steps of its windows (a prefix of a random stride-1 window is a random shorter window)."""
    from pyroseq.models import DiMTS

    if dataset not in cache:
        length = max(LENGTHS)
        x = training_windows(dataset, length)
        torch.manual_seed(args.seed)
        model = DiMTS(obs_dim=x.shape[-1], length=length, num_steps=args.num_steps, **DIMTS_NET)
        meta = train(model, x, f"{dataset}_dimts{length}", args, extra_meta=dict(net=DIMTS_NET, length=length))
        model.eval()
        cache.clear()
        cache[dataset] = (model, meta)
    return cache[dataset]


# -- evaluation --------------------------------------------------------------------------------------------

def real_subset(dataset, length, num, seed):
    return random_subset(get_dataset(dataset, length=length).windows, num, seed).clone()


def generate_kwargs(model, args):
    """Sampler settings of ``args`` for ``model``: history guidance for Stage-Diff (DiM-TS has no history)."""
    return dict(guidance=args.guidance) if isinstance(model, StageDiff) and args.guidance != 1 else {}


def generate01(model, num, length, args):
    """Generated series mapped to [0, 1]; returns (series, seconds per sample)."""
    t = time.time()
    with torch.no_grad():
        x = model.generate(num, length, seed=args.seed, **generate_kwargs(model, args))
    seconds = (time.time() - t) / num
    return ((x.clamp(-1, 1) + 1) / 2).float(), seconds


GENERATION_BLOCK = 250


def generate01_blocks(model, num, length, args, partial):
    """:func:`generate01` in blocks of :data:`GENERATION_BLOCK` series, block ``b`` with seed ``1000 * seed + b``.
    The finished blocks and their generation seconds are saved atomically to ``partial`` after each block, so an
    interrupted run resumes at the next block (the protocol's 17,165 series at length 256 take hours on one
    core); returns (series, seconds per sample)."""
    saved = torch.load(partial) if Path(partial).exists() else None
    done = [saved["samples"]] if saved else []
    seconds = saved["seconds"] if saved else 0.0
    count = sum(len(x) for x in done)
    while count < num:
        block, n = count // GENERATION_BLOCK, min(GENERATION_BLOCK, num - count)
        t = time.time()
        with torch.no_grad():
            x = model.generate(n, length, seed=args.seed * 1000 + block, **generate_kwargs(model, args))
        seconds += time.time() - t
        done = [torch.cat(done + [((x.clamp(-1, 1) + 1) / 2).float()])]
        count = len(done[0])
        save_checkpoint(partial, dict(samples=done[0], seconds=seconds))
        log(f"{Path(partial).stem}: generated {count}/{num} series ({seconds / count:.3f} s/series)")
    return done[0], seconds / num


def evaluate_cell(path, dataset, length, get_model, args, extra=None, prefix_of=None):
    """Generate and score one (data set, model, length) cell, saving after every metric.

    ``prefix_of``: the JSON file of a longer cell of the same model whose series' first ``length`` steps are
    exactly the series this cell would generate (DiM-TS generates windows of its trained length and cuts them,
    with the same seed); its saved series are used instead of generating them again when they exist."""
    cell = read_json(path) or {}
    if all(m in cell.get("metrics", {}) for m in METRICS):
        return cell
    model, meta = get_model()
    if model is None:
        return None
    samples = cached(path, ".samples.pt")
    real_all = get_dataset(dataset, length=length).windows
    subset = real_subset(dataset, length, args.eval_samples or len(real_all), args.seed)
    partial = cached(path, ".samples.partial.pt")
    longer = None if prefix_of is None else cached(prefix_of, ".samples.pt")
    if samples.exists():
        fake = torch.load(samples)
    else:
        source = {}
        if longer is not None and longer.exists():
            log(f"{Path(path).stem}: first {length} steps of the series of {longer.name}")
            fake = torch.load(longer)[:, :length].clone()
            if len(fake) != len(subset):
                raise ValueError(f"{longer} holds {len(fake)} series, the cell needs {len(subset)}")
            seconds = read_json(prefix_of)["gen_seconds_per_sample"]
            source = dict(samples_from=longer.name)
        else:
            log(f"{Path(path).stem}: generating {len(subset)} series of length {length}")
            if args.eval_samples == args.default_eval_samples:  # one call, as every 2,000-series cell so far
                fake, seconds = generate01(model, len(subset), length, args)
            else:
                fake, seconds = generate01_blocks(model, len(subset), length, args, partial)
        save_checkpoint(samples, fake)
        partial.unlink(missing_ok=True)  # only once the whole set is saved
        cell.update(dataset=dataset, length=length, eval_samples=len(subset), real_windows=len(real_all),
                    gen_seconds_per_sample=seconds, **source, train=meta, **(extra or {}))
        write_json(path, cell)
    # The discriminative classifier wants balanced classes: a random real subset the size of the fake set.
    return score_cell(cell, path, real_all, fake, args, Path(path).stem, discriminative_real=subset)


def timing_cell(path, args):
    cell = read_json(path)
    if cell is not None:
        return cell
    model, _ = trained_stagediff("etth", args.variant, args)
    seconds = {}
    for length in TIMING_LENGTHS:
        runs = []
        for _ in range(args.timing_repeats):
            t = time.time()
            model.generate(args.timing_samples, length, chunk_size=args.timing_samples, seed=args.seed,
                           **generate_kwargs(model, args))
            runs.append((time.time() - t) / args.timing_samples)
        seconds[str(length)] = min(runs)  # least disturbed by other load on the machine
        log(f"timing: length {length}: {seconds[str(length)]:.4f} s/sample")
    ratio = seconds["1024"] / (16 * seconds["64"])
    cell = dict(seconds_per_sample=seconds, ratio_1024_over_16x64=ratio, linear=ratio <= 1.3,
                samples=args.timing_samples, num_steps=args.num_steps, nfe_per_stage=2 * args.num_steps - 1,
                guidance=args.guidance)
    write_json(path, cell)
    return cell


def boundary_windows(series, width, stage=STAGE):
    """Windows of ``width`` steps centred on every stage boundary and on every stage centre."""
    T = series.shape[1]
    half = width // 2
    straddle = [series[:, b - half:b - half + width] for b in range(stage, T, stage)]
    inside = [series[:, c - half:c - half + width] for c in range(stage // 2, T, stage)]
    return torch.cat(straddle), torch.cat(inside)


def boundary_cell(path, dataset, length, args):
    cell = read_json(path) or {}
    if "straddle" in cell and "inside" in cell:
        return cell
    model, _ = trained_stagediff(dataset, args.variant, args)
    num_series = max(2, math.ceil(args.boundary_windows / (length // STAGE - 1)))
    samples = cached(path, ".samples.pt")
    if samples.exists():
        series = torch.load(samples)
    else:
        log(f"boundary {dataset} {length}: generating {num_series} series")
        series, _ = generate01(model, num_series, length, args)
        torch.save(series, samples)
    straddle, inside = boundary_windows(series, args.boundary_width)
    g = torch.Generator().manual_seed(args.seed)
    n = min(len(straddle), len(inside), args.boundary_windows)
    straddle = straddle[torch.randperm(len(straddle), generator=g)[:n]]
    inside = inside[torch.randperm(len(inside), generator=g)[:n]]
    real = real_subset(dataset, args.boundary_width, n, args.seed)
    for name, fake in (("straddle", straddle), ("inside", inside)):
        if name in cell:
            continue
        r = metrics.discriminative_score(real, fake, repeats=args.repeats, seed=args.seed,
                                         iterations=args.disc_iterations)
        cell[name] = dict(mean=r.mean, ci=r.ci, values=r.values.tolist())
        cell.update(dataset=dataset, length=length, width=args.boundary_width, windows=n)
        write_json(path, cell)
        log(f"boundary {dataset} {length}: {name} = {r}")
    cell["undetectable"] = cell["straddle"]["mean"] <= cell["inside"]["mean"] + 0.02
    write_json(path, cell)
    return cell


# -- report ------------------------------------------------------------------------------------------------

def fmt(m):
    if m is None:
        return "n/a"
    if isinstance(m, float):
        return f"{m:.3f}"
    ci = m.get("ci")
    return f"{m['mean']:.3f}" + ("" if ci is None or not math.isfinite(ci) else f" ± {ci:.3f}")


def report(args):
    out = Path(args.results)
    lines = [f"# Long-sequence generation ({'quick smoke run' if args.quick else 'full run'})", ""]
    header = "| data | length | model | context-FID | correlational | discriminative | predictive | s/sample |"
    sep = "|---|---|---|---|---|---|---|---|"
    lines += ["## Quality (lower is better; mean ± 95% t half-width)", "", header, sep]
    checks = []
    settings = settings_rows(args)
    current = cell_name(args.variant, *settings[0][:3])
    rows = [(cell_name(args.variant, *setting), label) for *setting, label in settings]
    if args.variant != "stagediff":  # the first runs' decoder, for comparison
        rows.append(("stagediff", "Stage-Diff, first decoder (τ=0)"))
    rows.append(("dimts", "DiM-TS"))
    for dataset in args.datasets:
        for length in LENGTHS:
            for (model, label), (suffix, note) in itertools.product(rows, PROTOCOL_ROWS):
                cell = read_json(out / f"{dataset}_{model}{suffix}_{length}.json")
                if cell is None and (suffix or model not in (current, "dimts")):
                    continue
                label = label + note
                ms = (cell or {}).get("metrics", {})
                gen = (cell or {}).get("gen_seconds_per_sample")
                lines.append(f"| {dataset} | {length} | {label} | " + " | ".join(fmt(ms.get(m)) for m in METRICS)
                             + f" | {'n/a' if gen is None else f'{gen:.3f}'} |")
                if model == current and (dataset, length) in PUBLISHED and ms:
                    pub = PUBLISHED[(dataset, length)]
                    for m in ("discriminative", "context_fid"):
                        if m in ms:
                            checks.append((f"{dataset} {length} {m}{note}: Stage-Diff {ms[m]['mean']:.3f} <= "
                                           f"Diffusion-TS {pub[m]:.3f}", ms[m]["mean"] <= pub[m]))
            pub = PUBLISHED.get((dataset, length))
            lines.append(f"| {dataset} | {length} | Diffusion-TS (published) | "
                         + " | ".join(fmt(None if pub is None else pub[m]) for m in METRICS) + " | n/a |")
    lines += ["", f"## Ablation (ETTh, length 256; {settings[0][3]} unless named)", "", header, sep]
    for variant in ("stagediff",) + ABLATIONS + EXTRA_VARIANTS:
        for (i, (*setting, label)), (suffix, note) in itertools.product(enumerate(settings), PROTOCOL_ROWS):
            cell = read_json(out / f"etth_{cell_name(variant, *setting)}{suffix}_256.json")
            if cell is None and (variant, i, suffix) != ("stagediff", 0, ""):
                continue
            ms = (cell or {}).get("metrics", {})
            gen = (cell or {}).get("gen_seconds_per_sample")
            lines.append(f"| etth | 256 | {variant}{'' if i == 0 else f' — {label}'}{note} | "
                         + " | ".join(fmt(ms.get(m)) for m in METRICS)
                         + f" | {'n/a' if gen is None else f'{gen:.3f}'} |")
    timing = read_json(out / f"{cell_name(part_stem('timing', args.variant), *settings[0][:3])}.json")
    lines += ["", "## Generation time (Stage-Diff, Heun, seconds per sample)", ""]
    if timing:
        s = timing["seconds_per_sample"]
        lines += ["| " + " | ".join(f"length {k}" for k in s) + " | time(1024) / (16 time(64)) |",
                  "|" + "---|" * (len(s) + 1),
                  "| " + " | ".join(f"{v:.4f}" for v in s.values()) + f" | {timing['ratio_1024_over_16x64']:.3f} |"]
        checks.append((f"generation linear in length: ratio {timing['ratio_1024_over_16x64']:.3f} <= 1.3",
                       timing["linear"]))
    else:
        lines.append("not run")
    lines += ["", "## Stage boundaries (discriminative score vs real windows)", "",
              "| data | model | series length | window | straddling a boundary | inside a stage |",
              "|---|---|---|---|---|---|"]
    for dataset in args.datasets:
        for length, (*setting, label) in itertools.product((256, 1024), settings):
            stem = part_stem(f"boundary_{dataset}_{length}", args.variant)
            cell = read_json(out / f"{cell_name(stem, *setting)}.json")
            if cell and "straddle" in cell and "inside" in cell:
                lines.append(f"| {dataset} | {label} | {length} | {cell['width']} | {fmt(cell['straddle'])} | "
                             f"{fmt(cell['inside'])} |")
                checks.append((f"{dataset} {length} {label} boundaries: straddle {cell['straddle']['mean']:.3f} "
                               f"<= inside {cell['inside']['mean']:.3f} + 0.02", cell["undetectable"]))
    models_dir = out / "models"
    if models_dir.exists():
        lines += ["", "## Training (budget in CPU minutes of one thread)", "",
                  "| model | steps | CPU minutes | wall minutes |", "|---|---|---|---|"]
        for p in sorted(models_dir.glob("*.json")):
            meta = read_json(p)
            lines.append(f"| {p.stem} | {meta.get('steps')} | {meta.get('cpu_seconds', 0) / 60:.1f} | "
                         f"{meta.get('seconds', 0) / 60:.1f}"
                         + ("" if meta.get("finished") else " (in progress)") + " |")
    lines += ["", "## Acceptance checks", ""] + [f"- [{'x' if ok else ' '}] {text}" for text, ok in checks]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text)
    print(text, flush=True)


# -- main --------------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short smoke version (tiny budgets and metrics)")
    p.add_argument("--report", action="store_true", help="only print the tables of finished cells")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="training budget per model in CPU minutes (default 60)")
    p.add_argument("--datasets", default="etth,stocks")
    p.add_argument("--models", default="stagediff,dimts")
    p.add_argument("--parts", default="quality,timing,boundary,ablation",
                   help="comma list among quality, timing, boundary, ablation")
    p.add_argument("--ablations", default=",".join(ABLATIONS),
                   help=f"comma list of Stage-Diff variants scored on ETTh 256 (any of {', '.join(VARIANTS)})")
    p.add_argument("--variant", default=DEFAULT_VARIANT, choices=tuple(VARIANTS),
                   help="Stage-Diff variant of the quality, timing and boundary parts (any of the --ablations "
                        "names); its 256-step ETTh cell is its ablation cell")
    p.add_argument("--lengths", default=",".join(map(str, LENGTHS)),
                   help="quality lengths, in the order they are run (each of 64, 128, 256)")
    p.add_argument("--eval-samples", default=None,
                   help="generated series per quality cell: a number (default 2000) or 'all' (as many as real "
                        "windows, the protocol); cells get an _n<k> or _nall suffix unless 2000")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--objective", default="edm", choices=("edm", "bound"))
    p.add_argument("--num-steps", type=int, default=DEFAULT_HEUN_STEPS,
                   help="Heun steps (2 * num_steps - 1 evaluations); cells get an _s<n> suffix when n != 20")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--history-noise", type=float, default=0.0,
                   help="Stage-Diff history_noise tau (conditioning augmentation; 0.1 was tried: ETTh 256 FID 0.58 "
                        "against 0.61 at tau = 0, within the noise, and a seam at 256 just over the bound)")
    p.add_argument("--guidance", type=float, default=1.0,
                   help="Stage-Diff history guidance w (StageDiff.generate(guidance=w)); cells get a _g<w> suffix")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", default=None, help="results directory")
    args = p.parse_args(argv)
    quick = args.quick
    args.default_eval_samples = 100 if quick else DEFAULT_EVAL_SAMPLES
    defaults = dict(budget_minutes=1.5 if quick else 60, eval_samples=args.default_eval_samples,
                    repeats=1 if quick else 5)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.eval_samples == "all":
        args.eval_samples = 0  # as many as real windows
    elif not str(args.eval_samples).isdigit() or int(args.eval_samples) < 1:
        p.error(f"--eval-samples must be a positive number or 'all', got {args.eval_samples!r}")
    else:
        args.eval_samples = int(args.eval_samples)
    args.ts2vec_iterations = 30 if quick else 600
    args.disc_iterations = 50 if quick else 2000
    args.pred_iterations = 50 if quick else 5000
    args.timing_samples = 4 if quick else 32
    args.timing_repeats = 1 if quick else 3
    args.boundary_width = 32
    args.boundary_windows = 64 if quick else 2000
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.models = [m for m in args.models.split(",") if m]
    args.parts = [m for m in args.parts.split(",") if m]
    args.ablations = parse_choices(p, args.ablations, VARIANTS, what="variant")
    args.lengths = [int(v) for v in args.lengths.split(",") if v]
    if not args.lengths or set(args.lengths) - set(LENGTHS):
        p.error(f"--lengths must be a comma list among {LENGTHS}, got {args.lengths}")
    if args.results is None:
        name = "long_generation_quick" if quick else "long_generation"
        args.results = str(RESULTS / name)
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.report:
        report(args)
        return
    out = Path(args.results)
    log(f"results in {out}; budget {args.budget_minutes} min per model; "
        f"{args.eval_samples or 'all real windows as'} evaluation windows")
    # ETTh first (the acceptance criteria), then the other data sets; models are trained on first use.
    datasets = sorted(args.datasets, key=lambda d: d != "etth")
    def cell(stem):  # file name stem of a cell under the current sampler settings
        return cell_name(stem, args.history_noise, args.guidance, args.num_steps)

    for dataset in datasets:
        if "quality" in args.parts and "stagediff" in args.models:
            for length in args.lengths:
                evaluate_cell(out / f"{dataset}_{cell(args.variant)}{samples_suffix(args)}_{length}.json", dataset,
                              length, lambda d=dataset: trained_stagediff(d, args.variant, args), args)
        if "timing" in args.parts and dataset == "etth":
            timing_cell(out / f"{cell(part_stem('timing', args.variant))}.json", args)
        if "boundary" in args.parts:
            for length in (256, 1024):
                boundary_cell(out / f"{cell(part_stem(f'boundary_{dataset}_{length}', args.variant))}.json", dataset,
                              length, args)
        if "ablation" in args.parts and dataset == "etth":
            for variant in args.ablations:
                evaluate_cell(out / f"etth_{cell(variant)}{samples_suffix(args)}_256.json", "etth", 256,
                              lambda v=variant: trained_stagediff("etth", v, args), args, extra=dict(variant=variant))
    if "quality" in args.parts and "dimts" in args.models:
        for dataset in datasets:
            # The longest cell first: the shorter ones are the first steps of its series (identical to generating).
            longest = out / f"{dataset}_dimts{samples_suffix(args)}_{max(LENGTHS)}.json"
            for length in sorted(args.lengths, reverse=True):
                evaluate_cell(out / f"{dataset}_dimts{samples_suffix(args)}_{length}.json", dataset, length,
                              lambda d=dataset: trained_dimts(d, args), args, prefix_of=longest)
    report(args)


if __name__ == "__main__":
    main()
