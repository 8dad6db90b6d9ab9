"""The ``pyroseq`` console script. Subcommands: ``demo`` (more to come: fit, forecast, generate, evaluate)."""

import argparse
import os
import sys
import time

from . import __version__

__all__ = ["main", "build_parser"]


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
    demo.add_argument("--steps", type=int, default=None, help="training steps per model (default: 500)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None):
    """Entry point of the ``pyroseq`` console script.

    :param list argv: arguments (default: ``sys.argv[1:]``).
    :returns: the exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
