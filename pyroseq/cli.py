"""The ``pyroseq`` console script. Subcommands: ``demo`` (DDSSM vs DKF in a few minutes), ``fit``,
``forecast``, ``backtest``, ``generate``, ``evaluate`` and ``impute`` (a run directory driven by a config file,
see :mod:`pyroseq.runs`) and ``config`` (print a starting config file)."""

import argparse
import os
import sys
import time
import traceback

from . import __version__
from .registry import model_names

__all__ = ["main", "build_parser"]

#: The models ``pyroseq config`` knows: the registry's names (importing it does not import torch).
CONFIG_MODELS = model_names()


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
    from .runs import run_forecast_csv

    result = run_forecast_csv(args.run_dir, input=args.input, horizon=args.horizon, output=args.output,
                              num_samples=args.num_samples, quantiles=tuple(args.quantiles or ()), seed=args.seed,
                              log=_log)
    _log(f"forecast {len(result['median'])} steps of {', '.join(result['columns'])}; wrote "
         f"{', '.join(result['paths'])}")
    return 0


def _backtest(args):
    from .runs import run_backtest

    result = run_backtest(args.run_dir, input=args.input, horizon=args.horizon, num_samples=args.num_samples,
                          stride=args.stride, max_origins=args.max_origins, seed=args.seed, log=_log)
    _log(f"wrote {', '.join(result['paths'])}")
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
    parser.add_argument("--debug", action="store_true", help="print the traceback of every error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="print the traceback of every error")
    demo = sub.add_parser(
        "demo", parents=[common], help="train DDSSM and DKF on the bimodal series, print a table and write plots",
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
        "fit", parents=[common], help="train a model from a config file into a run directory (resumable)",
        description="Train the model a config file describes (JSON, or TOML on Python >= 3.11; "
                    "`pyroseq config MODEL` prints one) and write the config, a resumable checkpoint, the loss "
                    "history and a loss plot to the run directory. Re-running continues from the checkpoint.")
    fit.add_argument("--config", metavar="FILE", help="config file (omit to continue the run in --run-dir)")
    fit.add_argument("--run-dir", required=True, **run_dir)
    fit.add_argument("--num-steps", type=int, default=None, help="override train.num_steps (e.g. to train longer)")
    fit.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    fit.set_defaults(func=_fit)

    fc = sub.add_parser(
        "forecast", help="forecast past the end of a CSV series (dkf, ddssm, conditional, latent_diffusion)",
        parents=[common],
        description="Read a CSV file with the columns of the run's training data (empty or NaN cells are missing "
                    "values), condition on its last rows (as many as a training window) and forecast H steps past "
                    "its last row. Writes the median in the file's units with its column names, after a time "
                    "column that continues the file's own (or a step column 1..H), one file per quantile "
                    "(OUTPUT_q<Q>.csv) and a fan chart (OUTPUT.png).")
    fc.add_argument("--run-dir", required=True, **run_dir)
    fc.add_argument("--input", metavar="FILE", default=None,
                    help="CSV file with the recent rows (default: the run's training file, if it was a CSV file)")
    fc.add_argument("--horizon", type=int, default=None, help="steps to forecast H (default: forecast.horizon)")
    fc.add_argument("--output", metavar="FILE", default=None,
                    help="output CSV file (default: forecast.csv in the run directory)")
    fc.add_argument("--num-samples", type=int, default=None, help="forecast samples (default: forecast.num_samples)")
    fc.add_argument("--quantiles", type=float, nargs="+", metavar="Q", default=None,
                    help="also write these quantiles, each to OUTPUT_q<Q>.csv (e.g. --quantiles 0.05 0.95)")
    fc.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    fc.set_defaults(func=_forecast)

    bt = sub.add_parser(
        "backtest", help="score forecasts from rolling origins over a CSV series, or on held-out windows",
        parents=[common],
        description="With --input: forecast H steps from rolling origins over the CSV file (every --stride rows, "
                    "each conditioned on a training window of rows before it) and score them per horizon step "
                    "(CRPS, energy score, 50%%/90%% interval coverage, MAE) in the file's units. Without: forecast "
                    "the last H steps of the run's held-out windows (also writes forecast.npz and forecast.png). "
                    "Prints the table and writes backtest.json, backtest.txt and backtest.png to the run "
                    "directory.")
    bt.add_argument("--run-dir", required=True, **run_dir)
    bt.add_argument("--input", metavar="FILE", default=None, help="CSV series (default: the held-out windows)")
    bt.add_argument("--horizon", type=int, default=None, help="forecast horizon H (default: forecast.horizon)")
    bt.add_argument("--num-samples", type=int, default=None, help="samples per origin (default: forecast.num_samples)")
    bt.add_argument("--stride", type=int, default=None, help="rows between origins (default: H)")
    bt.add_argument("--max-origins", type=int, default=None,
                    help="keep the most recent origins only (default: 100; held-out windows: forecast.max_series)")
    bt.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    bt.set_defaults(func=_backtest)

    gen = sub.add_parser(
        "generate", parents=[common],
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
        "evaluate", parents=[common], help="score a trained run and write metrics.json",
        description="Forecasting models: CRPS, energy score and interval coverage on the held-out windows. "
                    "Generative models: context-FID, correlational, discriminative and predictive scores of "
                    "generated against real windows (small settings from the config's evaluate section). "
                    "Prints a table and writes metrics.json.")
    ev.add_argument("--run-dir", required=True, **run_dir)
    ev.add_argument("--seed", type=int, default=None, help="random seed (default: evaluate.seed)")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ev.set_defaults(func=_evaluate)

    imp = sub.add_parser(
        "impute", parents=[common], help="fill the missing values of a CSV series with a trained 'conditional' run",
        description="Read a CSV file with the columns of the run's training data (empty cells or NaN mark "
                    "missing values), scale it like the training data and impute it with overlapping windows of "
                    "the model's length in time order, every sample path conditioning on what it filled before "
                    "(gaps of any length; intervals widen away from the observed values). Writes the median "
                    "imputation in the file's units as CSV (observed cells copied unchanged), one file per "
                    "quantile (OUTPUT_q<Q>.csv) and the record of the missing cells (OUTPUT_missing.csv: 1 = "
                    "imputed). Never overwrites the input.")
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
        "config", parents=[common], help="print a small starting config file for a model",
        description="Print a complete config (JSON, every default filled in) for MODEL; save it and edit it: "
                    "pyroseq config ddssm > ddssm.json")
    cfg.add_argument("model", choices=CONFIG_MODELS, help="the model")
    cfg.set_defaults(func=_config)
    return parser


def _usage_errors():
    """The exceptions that are the user's to fix: reported in one line with exit status 2."""
    from .inference import CheckpointError
    from .runs import UsageError

    return (UsageError, FileNotFoundError, CheckpointError)


def main(argv=None):
    """Entry point of the ``pyroseq`` console script.

    Errors in a configuration, an argument or an input file (:class:`~pyroseq.runs.UsageError`, a missing
    file or run directory, an unreadable checkpoint) print one line and exit with status 2. Training that
    diverges (:class:`~pyroseq.inference.NonFiniteError`) prints the step and exits with status 1; any
    other exception is a failure of the program: its traceback is printed, with status 1. ``--debug``
    prints the traceback of every error. Ctrl-C exits with status 130 (``pyroseq fit`` first writes the
    losses of the steps done).

    :param list argv: arguments (default: ``sys.argv[1:]``).
    :returns: the exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    debug = getattr(args, "debug", False)
    prefix = f"pyroseq {args.command}"
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        hint = " (`pyroseq fit` continues from its last checkpoint when run again)" if args.command == "fit" else ""
        print(f"{prefix}: interrupted{hint}", file=sys.stderr)
        return 130
    except Exception as e:
        from .inference import NonFiniteError

        if debug:
            traceback.print_exc()
        if isinstance(e, _usage_errors()):
            print(f"{prefix}: error: {e}", file=sys.stderr)
            return 2
        if isinstance(e, NonFiniteError):
            print(f"{prefix}: error: training diverged at step {e.step}: {e}. Lower train.lr or "
                  f"train.clip_norm (or check the data) and run again; --debug shows the traceback",
                  file=sys.stderr)
            return 1
        if not debug:
            traceback.print_exc()
        print(f"{prefix}: unexpected {type(e).__name__} (the traceback above shows where; please report it "
              f"if the inputs look right)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
