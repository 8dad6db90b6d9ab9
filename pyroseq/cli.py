"""The ``pyroseq`` console script. Subcommands: ``demo`` (DDSSM vs DKF in a few minutes), ``fit``,
``forecast``, ``generate``, ``evaluate`` and ``impute`` (a run directory driven by a config file, see
:mod:`pyroseq.runs`) and ``config`` (print a starting config file)."""

import argparse
import os
import sys
import time

from . import __version__

__all__ = ["main", "build_parser"]

# pyroseq.runs.MODELS, spelled out so that parsing arguments does not import torch.
CONFIG_MODELS = ("dkf", "ddssm", "conditional", "latent_diffusion", "dimts", "stagediff")


def _demo(args):
    import torch

    from .demo import ComparisonConfig, format_table, run_comparison, write_plots

    torch.set_num_threads(args.threads)
    overrides = {"seed": args.seed}
    if args.steps is not None:
        if args.steps < 1:
            raise SystemExit("pyroseq demo: --steps must be a positive integer")
        overrides["num_steps"] = args.steps
        overrides["kl_schedule"] = ("linear", max(1, (2 * args.steps) // 5), 1.0, 0.0)
    config = ComparisonConfig.demo(**overrides)
    start = time.perf_counter()
    print(f"pyroseq {__version__} demo: DDSSM (diffusion transition) vs DKF (Gaussian transition) on the "
          f"bimodal switching process z[t] = 0.9 z[t-1] +/- 4, x[t] = z[t] + 0.2 e[t]", flush=True)
    print(f"shortened run: {config.num_train} training series of length {config.train_length}, "
          f"{config.num_steps} steps per model, {config.num_test} test series", flush=True)
    result = run_comparison(config, progress=not args.no_progress, log=lambda msg: print(msg, flush=True))
    print()
    print(format_table(result["rows"], config.horizon))
    paths = write_plots(result, args.out)
    print()
    print(f"wrote {len(paths)} figures to {os.path.abspath(args.out)}:")
    for path in paths:
        print(f"  {path}")
    print(f"done in {time.perf_counter() - start:.0f} s. The full benchmark (longer training, acceptance checks): "
          f"python benchmarks/ddssm_vs_dkf.py")
    return 0


def _log(msg):
    print(msg, flush=True)


def _fit(args):
    from .runs import load_config, run_fit

    config = None if args.config is None else load_config(args.config)
    if config is None and not os.path.isdir(args.run_dir):
        raise FileNotFoundError(f"run directory {args.run_dir} does not exist; give --config to start a new run")
    result = run_fit(args.run_dir, config, num_steps=args.num_steps, progress=not args.no_progress, log=_log)
    _log(f"wrote {', '.join(result['paths'])}")
    return 0


def _forecast(args):
    from .runs import run_forecast

    result = run_forecast(args.run_dir, horizon=args.horizon, num_samples=args.num_samples,
                          max_series=args.max_series, seed=args.seed, log=_log)
    _log(f"forecast samples {tuple(result['samples'].shape)} (S, N, H, C); wrote {', '.join(result['paths'])}")
    return 0


def _generate(args):
    from .runs import run_generate

    result = run_generate(args.run_dir, num_samples=args.num_samples, length=args.length, seed=args.seed,
                          progress=not args.no_progress, log=_log)
    _log(f"generated {tuple(result['samples'].shape)} (n, L, C); wrote {', '.join(result['paths'])}")
    return 0


def _evaluate(args):
    from .runs import format_metrics, run_evaluate

    result = run_evaluate(args.run_dir, seed=args.seed, progress=not args.no_progress, log=_log)
    print()
    print(format_metrics(result))
    _log(f"wrote {result['path']}")
    return 0


def _impute(args):
    from .runs import run_impute

    result = run_impute(args.run_dir, args.input, output=args.output, num_samples=args.num_samples,
                        quantiles=tuple(args.quantiles or ()), seed=args.seed, log=_log)
    _log(f"imputed {int((~result['observed']).sum())} cells; wrote {', '.join(result['paths'])}")
    return 0


def _config(args):
    import json

    from .runs import example_config

    print(json.dumps(example_config(args.model), indent=1))
    return 0


def build_parser():
    """The argument parser of the ``pyroseq`` command (argparse subcommands)."""
    parser = argparse.ArgumentParser(
        prog="pyroseq",
        description="pyroseq: diffusion models as Pyro distributions for sequences (DDSSM, DiM-TS, Stage-Diff).",
    )
    parser.add_argument("--version", action="version", version=f"pyroseq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="train DDSSM and DKF on the bimodal series, print a table and write plots",
        description="A shortened DDSSM-vs-DKF comparison (a few minutes on a laptop CPU): prints the table of "
                    "forecast scores and writes a forecast fan chart, the one-step predictive histogram against "
                    "the true density and an ArviZ posterior predictive check as PNG files.")
    demo.add_argument("--out", default="demo_output", help="output folder for the PNG files (default: %(default)s)")
    demo.add_argument("--steps", type=int, default=None, help="training steps per model (default: 1000)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    demo.set_defaults(func=_demo)

    run_dir = dict(metavar="DIR", help="the run directory (config, checkpoint, losses, forecasts, metrics, plots)")
    fit = sub.add_parser(
        "fit", help="train a model from a config file into a run directory (resumable)",
        description="Train the model a config file describes (JSON, or TOML on Python >= 3.11; "
                    "`pyroseq config MODEL` prints one) and write the config, a resumable checkpoint, the loss "
                    "history and a loss plot to the run directory. Re-running continues from the checkpoint.")
    fit.add_argument("--config", metavar="FILE", help="config file (omit to continue the run in --run-dir)")
    fit.add_argument("--run-dir", required=True, **run_dir)
    fit.add_argument("--num-steps", type=int, default=None, help="override train.num_steps (e.g. to train longer)")
    fit.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    fit.set_defaults(func=_fit)

    fc = sub.add_parser(
        "forecast", help="forecast the held-out windows of a trained run (dkf, ddssm, conditional, latent_diffusion)",
        description="Forecast the last H steps of every held-out window from its first T - H steps (models dkf, "
                    "ddssm, conditional, latent_diffusion); writes "
                    "forecast.npz (samples (S, N, H, C), history, truth) and a fan chart forecast.png.")
    fc.add_argument("--run-dir", required=True, **run_dir)
    fc.add_argument("--horizon", type=int, default=None, help="forecast horizon H (default: forecast.horizon)")
    fc.add_argument("--num-samples", type=int, default=None, help="samples per series (default: forecast.num_samples)")
    fc.add_argument("--max-series", type=int, default=None, help="held-out series (default: forecast.max_series)")
    fc.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    fc.set_defaults(func=_forecast)

    gen = sub.add_parser(
        "generate",
        help="sample new windows from a trained run (DiM-TS, Stage-Diff; DKF/DDSSM/latent_diffusion from the prior)",
        description="Generate windows and write generated.npz (samples (n, L, C) in data units) and a plot of "
                    "real and generated windows. Stage-Diff generates any length; DiM-TS at most its training "
                    "length.")
    gen.add_argument("--run-dir", required=True, **run_dir)
    gen.add_argument("--num-samples", type=int, default=None, help="number of windows (default: generate.num_samples)")
    gen.add_argument("--length", type=int, default=None, help="window length (default: the training length)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    gen.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    gen.set_defaults(func=_generate)

    ev = sub.add_parser(
        "evaluate", help="score a trained run and write metrics.json",
        description="Forecasting models: CRPS, energy score and interval coverage on the held-out windows. "
                    "Generative models: context-FID, correlational, discriminative and predictive scores of "
                    "generated against real windows (small settings from the config's evaluate section). "
                    "Prints a table and writes metrics.json.")
    ev.add_argument("--run-dir", required=True, **run_dir)
    ev.add_argument("--seed", type=int, default=None, help="random seed (default: evaluate.seed)")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ev.set_defaults(func=_evaluate)

    imp = sub.add_parser(
        "impute", help="fill the missing values of a CSV series with a trained 'conditional' run",
        description="Read a CSV file with the columns of the run's training data (empty cells or NaN mark "
                    "missing values), scale it like the training data, impute it window by window (windows of "
                    "the model's length; the last one may overlap its predecessor) and write the median "
                    "imputation in the file's units as CSV; observed cells are copied unchanged.")
    imp.add_argument("--run-dir", required=True, **run_dir)
    imp.add_argument("--input", required=True, metavar="FILE", help="CSV file with missing values")
    imp.add_argument("--output", metavar="FILE", default=None,
                     help="output CSV file (default: imputed.csv in the run directory)")
    imp.add_argument("--num-samples", type=int, default=100, help="imputations per window (default: %(default)s)")
    imp.add_argument("--quantiles", type=float, nargs="+", metavar="Q", default=None,
                     help="also write these quantiles, each to OUTPUT_q<Q>.csv (e.g. --quantiles 0.05 0.95)")
    imp.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    imp.set_defaults(func=_impute)

    cfg = sub.add_parser(
        "config", help="print a small starting config file for a model",
        description="Print a complete config (JSON, every default filled in) for MODEL; save it and edit it: "
                    "pyroseq config ddssm > ddssm.json")
    cfg.add_argument("model", choices=CONFIG_MODELS, help="the model")
    cfg.set_defaults(func=_config)
    return parser


def main(argv=None):
    """Entry point of the ``pyroseq`` console script.

    :param list argv: arguments (default: ``sys.argv[1:]``).
    :returns: the exit status (2 for a bad config, bad arguments or a missing run directory/file, with a
        one-line message on stderr).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        # Bad configs, arguments and missing run files: one readable line, no traceback.
        print(f"pyroseq {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pyroseq {args.command}: interrupted (`pyroseq fit` continues from its last checkpoint when run "
              f"again)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
