"""Check, or execute and save, the tutorial notebooks from their sources.

Each tutorial's source is a jupytext percent-format script next to it (``notebooks/01_quickstart.py`` ...),
paired with the executed notebook (``notebooks/01_quickstart.ipynb``) that holds the outputs. Edit the
``.py`` file, then run this driver to refresh the ``.ipynb``.

Usage::

    python notebooks/build_notebooks.py                       # check that every .ipynb matches its .py
    python notebooks/build_notebooks.py --execute             # run them in full mode and save the outputs
    python notebooks/build_notebooks.py --execute --smoke 01  # run one notebook in smoke mode (CI sizes)

``make notebooks`` runs the second line. Each notebook reads the environment variable ``PYROSEQ_SMOKE``: ``1``
shrinks data, training and metrics so the notebook finishes in seconds (``tests/test_notebooks.py`` runs them
so); otherwise it runs at "full" tutorial size (a few minutes on one CPU core). Committed notebooks hold
full-mode outputs.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
FORMATS = "ipynb,py:percent"
# The tutorial sources: every numbered percent-format script in this directory.
NOTEBOOKS = {p.stem: p for p in sorted(HERE.glob("[0-9][0-9]_*.py"))}


def build(name):
    """The notebook ``name`` (a key of :data:`NOTEBOOKS`) read from its source, without outputs."""
    nb = jupytext.read(NOTEBOOKS[name], fmt="py:percent")
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "jupytext": {"formats": FORMATS},
    }
    return nb


def cells(nb):
    """The (type, source) pairs of the cells of ``nb``: what must agree between a notebook and its source."""
    return [(c.cell_type, c.source) for c in nb.cells]


def execute(nb, smoke=False, timeout=1800, cwd=None):
    """Run ``nb`` in place with nbclient (full mode unless ``smoke``); returns the seconds it took."""
    from nbclient import NotebookClient

    env_before = os.environ.get("PYROSEQ_SMOKE")
    os.environ["PYROSEQ_SMOKE"] = "1" if smoke else "0"
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(cwd or HERE)}}).execute()
        seconds = time.perf_counter() - start
    finally:
        if env_before is None:
            os.environ.pop("PYROSEQ_SMOKE", None)
        else:
            os.environ["PYROSEQ_SMOKE"] = env_before
    nb.metadata["pyroseq"] = {"mode": "smoke" if smoke else "full", "seconds": round(seconds, 1),
                              "executed": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook name prefixes (default: all)")
    parser.add_argument("--execute", action="store_true", help="run the notebooks and save their outputs")
    parser.add_argument("--smoke", action="store_true", help="with --execute: run in smoke mode")
    args = parser.parse_args(argv)
    names = [n for n in NOTEBOOKS if not args.names or any(n.startswith(p) for p in args.names)]
    stale = []
    for name in names:
        nb, path = build(name), HERE / f"{name}.ipynb"
        if args.execute:
            seconds = execute(nb, smoke=args.smoke)
            print(f"{name}: executed in {'smoke' if args.smoke else 'full'} mode in {seconds:.0f} s", flush=True)
            nbformat.write(nb, str(path))
            print(f"wrote {path}", flush=True)
        elif not path.exists() or cells(nbformat.read(path, as_version=4)) != cells(nb):
            stale.append(name)
            print(f"{name}: {path.name} does not match {name}.py (run with --execute to refresh it)", flush=True)
        else:
            print(f"{name}: up to date", flush=True)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
