"""Samples of this checkout against another git revision, for the same weights and seeds: the check that a
refactoring of the models changed no number (so trained benchmark models need no retraining).

Every case builds a model in a one-thread child process of the baseline revision (checked out as a git worktree in
the ignored cache, as ``step_time.py`` does), loads its saved benchmark weights or makes random ones, saves that
state dict and draws samples with fixed seeds; a child process of this checkout then loads the *baseline's* state
dict (which also checks that old state dicts load) and draws the same calls. The table gives the largest absolute
difference per case (it must stay below ``--tolerance``).

Cases: DiM-TS and Stage-Diff ``generate`` (saved generation and long-generation models, and small random models
with covariates, guidance, history noise, DDPM/Euler samplers and churn), the conditional models' forecasts
(:func:`pyroseq.inference.forecast`) and ``impute`` (saved ETTh1 models, random CSDI / Stage-Diff / replacement
models) and the latent-diffusion state-space model's ``generate`` and forecast. Cases whose weights are missing
are skipped (and listed).

Command::

    python benchmarks/refactor_identity.py --baseline c729897 --weights /path/to/benchmarks/.cache
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import CACHE  # noqa: E402
from step_time import run_child, worktree  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Runs every case in one process: argv = role ("baseline" or "new"), weights directory, output directory.
CHILD = r"""
import argparse, json, sys, warnings
from pathlib import Path
import torch
torch.set_num_threads(1)
warnings.simplefilter("ignore")
role, weights, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
sys.path.insert(0, "benchmarks")
from pyroseq.inference import forecast
from pyroseq.models import ConditionalDiffusion, DiMTS, LatentDiffusionSSM, StageDiff


def data(*shape, seed=0, nan=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    if nan:
        x[torch.rand(*shape, generator=g) < nan] = float("nan")
    return x


def randomise(model):
    # Weights, moving average and scaler that differ from a fresh model's (the baseline's are saved and reused).
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        model.on_step(0)
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        model.on_step(1)
        for name, b in model.named_buffers():
            if name in ("x_loc", "scaler.low", "emission.x_loc"):
                b.add_(0.1 * torch.randn(b.shape, generator=g))
            if name in ("x_scale", "scaler.high", "emission.x_scale"):
                b.mul_(1.5)


def saved(path):
    return lambda model: model.load_state_dict(torch.load(weights / path))


gen_args = argparse.Namespace(objective="edm", num_steps=20, aux=False, ema_decay=0.999)
long_args = lambda tau: argparse.Namespace(objective="edm", num_steps=20, history_noise=tau)
small_stage = dict(d_model=16, num_heads=2, num_encoder_layers=1)
u7, h7 = data(3, 120, 4, seed=5), data(3, 96, 7, seed=6)


# The ETTh1 forecasting models saved before per-series scaling (the forecasting benchmark keeps them there).
def etth(name):
    import etth_tasks

    def build():
        model = etth_tasks.build_model(name, channels=7)
        # Compare the configuration of the baseline's time (before per-series scaling), on both sides.
        if getattr(model, "local_scaling", None):
            model.local_scaling = False if isinstance(model.local_scaling, bool) else None
        return model
    return build


def fc(hist, horizon, cov, seed=0, n=3):
    return lambda m: forecast(m, hist, horizon, num_samples=n, covariates=cov, seed=seed)


CASES = {
    # name: (build, weights ("random" or a loader), {call name: call})
    "dimts sines": (lambda: __import__("generation").build(5, gen_args), saved("generation/models/sines.pt"),
                    {"generate": lambda m: m.generate(32, seed=0)}),
    "dimts stocks": (lambda: __import__("generation").build(6, gen_args), saved("generation/models/stocks.pt"),
                     {"generate": lambda m: m.generate(32, seed=0)}),
    "stagediff etth": (lambda: __import__("long_generation").build("stagediff", 7, long_args(0.0)),
                       saved("long_generation/models/etth_stagediff.pt"),
                       {"generate": lambda m: m.generate(4, 256, seed=0)}),
    "stagediff etth tau=0.1": (lambda: __import__("long_generation").build("stagediff", 7, long_args(0.1)),
                               saved("long_generation/models/etth_stagediff_hn0.1.pt"),
                               {"generate w=1.5": lambda m: m.generate(4, 200, seed=1, guidance=1.5)}),
    "cond_dimts etth": (etth("cond_dimts"), saved("forecasting/etth1_96_24/global_scaling/cond_dimts.pt"),
                        {"forecast": fc(h7, 24, u7),
                         "impute": lambda m: m.impute(data(2, 120, 7, seed=7, nan=0.3), covariates=u7[:2],
                                                      num_samples=2, seed=0)}),
    "cond_stagediff etth": (etth("cond_stagediff"), saved("forecasting/etth1_96_24/global_scaling/cond_stagediff.pt"),
                            {"forecast": fc(h7, 24, u7),
                             "impute": lambda m: m.impute(data(2, 120, 7, seed=7, nan=0.3), covariates=u7[:2],
                                                          num_samples=2, seed=0)}),
    "latent_diffusion etth": (etth("latent_diffusion"),
                              saved("forecasting/etth1_96_24/global_scaling/latent_diffusion.pt"),
                              {"generate": lambda m: m.generate(3, 120, covariates=u7, seed=0),
                               "forecast": fc(h7, 24, u7)}),
    "dimts random, covariates": (
        lambda: DiMTS(3, 16, covariate_dim=2, hidden_dim=16, d_state=4, num_steps=5), "random",
        {"generate": lambda m: m.generate(10, covariates=data(10, 16, 2), seed=0, chunk_size=4),
         "generate ddpm": lambda m: m.generate(6, 12, covariates=data(6, 16, 2), sampler="ddpm", num_steps=30, seed=1),
         "generate churn": lambda m: m.generate(6, covariates=data(6, 16, 2), S_churn=5.0, seed=2)}),
    "stagediff random, covariates": (
        lambda: StageDiff(2, stage_length=8, covariate_dim=2, history_noise=0.1, num_steps=5, **small_stage),
        "random",
        {"generate w=1.5": lambda m: m.generate(7, 20, covariates=data(7, 24, 2), chunk_size=3, guidance=1.5,
                                                seed=0),
         "generate euler": lambda m: m.generate(5, 16, covariates=data(5, 16, 2), sampler="euler", seed=3)}),
    "conditional csdi random": (
        lambda: ConditionalDiffusion(3, 12, backbone="csdi", covariate_dim=1, channels=8, num_layers=1, num_steps=4),
        "random",
        {"impute": lambda m: m.impute(data(4, 12, 3, seed=2, nan=0.4), covariates=data(4, 12, 1), num_samples=3,
                                      seed=0),
         "forecast": fc(data(4, 10, 3, seed=3), 4, data(4, 14, 1))}),
    "conditional stagediff random": (
        lambda: ConditionalDiffusion(2, 16, backbone="stagediff", stage_length=8, num_steps=4, sample_chunk_size=4,
                                     **small_stage),
        "random",
        {"impute": lambda m: m.impute(data(3, 16, 2, seed=2, nan=0.4), num_samples=3, seed=0),
         "forecast": fc(data(3, 12, 2, seed=3), 8, None)}),
    "conditional replacement random": (
        lambda: ConditionalDiffusion(2, 12, backbone="dimts", covariate_dim=2, observation_planes=False,
                                     hidden_dim=8, d_state=4, num_steps=4),
        "random",
        {"generate": lambda m: m.generate(5, covariates=data(5, 12, 2), seed=0),
         "impute": lambda m: m.impute(data(3, 12, 2, seed=2, nan=0.4), covariates=data(3, 12, 2), num_samples=2,
                                      seed=0)}),
    "latent_diffusion random": (
        lambda: LatentDiffusionSSM(2, 2, 12, backbone="stagediff", stage_length=6, emission_num_steps=3,
                                   num_steps=3, denoiser_dim=8, rnn_dim=8, hidden_dim=8,
                                   emission_net_kwargs=dict(small_stage, patch_size=2)),
        "random",
        {"generate": lambda m: m.generate(4, 12, seed=0), "forecast": fc(data(3, 10, 2, seed=3), 4, None)}),
}

results, skipped = {}, []
for name, (build, source, calls) in CASES.items():
    tag = name.replace(" ", "_").replace(",", "").replace("=", "")
    torch.manual_seed(0)
    model = build()
    if role == "baseline":
        if source == "random":
            randomise(model)
        else:
            try:
                source(model)
            except FileNotFoundError:
                skipped.append(name)
                continue
        torch.save(model.state_dict(), out / f"{tag}.state.pt")
    else:
        state = out / f"{tag}.state.pt"
        if not state.exists():
            skipped.append(name)
            continue
        model.load_state_dict(torch.load(state))  # the baseline's layout
    model.eval()
    for call, fn in calls.items():
        value = fn(model)
        results[f"{name}: {call}"] = value if torch.is_tensor(value) else value["x_future"]
torch.save(results, out / f"{role}.samples.pt")
print(json.dumps(skipped))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="git revision to compare with")
    parser.add_argument("--weights", default=str(CACHE), help="the benchmarks' cache with the trained models")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    args = parser.parse_args(argv)
    import torch

    out = CACHE / "refactor_identity" / args.baseline
    out.mkdir(parents=True, exist_ok=True)
    skipped = run_child(worktree(args.baseline), CHILD, "baseline", args.weights, out)
    run_child(ROOT, CHILD, "new", args.weights, out)
    old, new = torch.load(out / "baseline.samples.pt"), torch.load(out / "new.samples.pt")
    rows = {}
    for key, value in old.items():
        diff = (new[key] - value).abs().max().item() if new[key].shape == value.shape else float("inf")
        rows[key] = dict(shape=list(value.shape), max_abs_diff=diff, identical=diff < args.tolerance)
    print(f"max |new - baseline| of samples for equal weights and seeds; baseline {args.baseline}")
    print(f"{'case':<58} {'shape':<18} {'max abs diff':>13}")
    for key, row in rows.items():
        print(f"{key:<58} {str(tuple(row['shape'])):<18} {row['max_abs_diff']:>13.3g}")
    if skipped:
        print(f"skipped (no weights): {', '.join(skipped)}")
    ok = all(row["identical"] for row in rows.values())
    print("all identical" if ok else f"DIFFERENCES above {args.tolerance}")
    if args.out:
        Path(args.out).write_text(json.dumps(dict(baseline=args.baseline, tolerance=args.tolerance, rows=rows,
                                                  skipped=skipped), indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
