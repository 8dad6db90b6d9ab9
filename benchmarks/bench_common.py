"""Pieces shared by the generation benchmarks: where results and large artefacts live, timestamped logging,
atomic JSON cells, the training budget clock (CPU time of this process, resumable across runs), seeded subsets
of real windows and the four quality metrics of a cell.

Results (small JSON cells, Markdown summaries, training metadata) are written under :data:`RESULTS` and
committed. Large artefacts (trained weights, training checkpoints, generated samples, logs) go to the ignored
:data:`CACHE`, in the same relative layout: ``results/long_generation/models/etth_stagediff.json`` has its
weights in ``.cache/long_generation/models/etth_stagediff.pt``. Training resumes from the cache; in a fresh
clone the cache is empty and the benchmarks train again (a model's metadata without its weights does not count,
see :func:`read_training_meta`)."""

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["RESULTS", "CACHE", "cached",
           "BudgetClock", "OutOfTime", "log", "read_json", "read_training_meta", "write_json", "fill_defaults",
           "parse_choices", "METRICS", "random_subset", "score", "result_dict", "score_cell"]

METRICS = ("context_fid", "correlational", "discriminative", "predictive")

#: Committed results of the benchmarks: small JSON cells and Markdown summaries.
RESULTS = Path(__file__).resolve().parent / "results"
#: Ignored cache of the benchmarks' large artefacts (weights, checkpoints, samples, logs), laid out as RESULTS.
CACHE = Path(__file__).resolve().parent / ".cache"


def cached(path, suffix=None):
    """Where the large artefact ``path`` (a file or directory under the results directory, its suffix replaced by
    ``suffix`` when given) is kept: the same relative place under :data:`CACHE` when ``path`` is inside :data:`RESULTS`,
    otherwise ``path`` itself (a results directory of the user's choice keeps its artefacts). The parent
    directory is created."""
    path = Path(path)
    if suffix is not None:
        path = path.with_suffix(suffix)
    try:
        path = CACHE / path.resolve().relative_to(RESULTS)
    except ValueError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class OutOfTime(Exception):
    """Raised by a training callback when the CPU-time budget is spent."""


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def random_subset(windows, num, seed):
    """``min(num, N)`` of the windows ``(N, L, C)``, drawn without replacement by ``numpy``'s generator of
    ``seed`` and kept in their original order."""
    idx = np.random.default_rng(seed).choice(len(windows), size=min(num, len(windows)), replace=False)
    return windows[torch.as_tensor(np.sort(idx))]


def read_json(path):
    return json.loads(Path(path).read_text()) if Path(path).exists() else None


def read_training_meta(meta_path, weights, checkpoint, name):
    """The saved metadata of a training run, or None if there is none or if neither its ``weights`` nor its
    ``checkpoint`` exists. A fresh clone can hold the metadata of a model whose weights were never committed;
    continuing its :class:`BudgetClock` would count training that is not there, so the run starts again."""
    meta = read_json(meta_path)
    if meta is not None and not Path(weights).exists() and not Path(checkpoint).exists():
        log(f"{name}: metadata of {meta.get('steps', 0)} steps but no weights or checkpoint; training from scratch")
        return None
    return meta


def write_json(path, obj):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # several benchmark processes may share a file
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


class BudgetClock:
    """CPU and wall seconds of training, continuing from the ``cpu_seconds`` / ``seconds`` of a saved
    meta dict. By default (``clock="cpu"``) the budget is CPU time of this (single-threaded) process: on a
    machine shared with other jobs, wall time would measure the neighbours; on an idle core the two are equal.
    ``clock="wall"`` budgets wall time instead, for training that uses the whole machine (several threads,
    nothing else running)."""

    def __init__(self, budget_minutes, meta=None, clock="cpu"):
        if clock not in ("cpu", "wall"):
            raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")
        meta = meta or {}
        self.clock = clock
        self.budget = budget_minutes * 60
        self.spent = meta.get("cpu_seconds", 0.0)
        self._cpu0 = time.process_time() - self.spent
        self._wall0 = time.time() - meta.get("seconds", 0.0)

    def cpu(self):
        return time.process_time() - self._cpu0

    def wall(self):
        return time.time() - self._wall0

    def check(self):
        """Raise :class:`OutOfTime` once the budget is spent."""
        if (self.wall() if self.clock == "wall" else self.cpu()) > self.budget:
            raise OutOfTime


def fill_defaults(args, defaults):
    """Set every attribute of ``args`` that is None to its value in ``defaults``."""
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def parse_choices(parser, value, choices, what="model"):
    """Split a comma list and check every item is in ``choices`` (``parser.error`` otherwise)."""
    items = [v for v in value.split(",") if v]
    for item in items:
        if item not in choices:
            parser.error(f"unknown {what} {item!r}; choose from {', '.join(choices)}")
    return items


def score(name, real, fake, args):
    """One metric of :mod:`pyroseq.metrics` with the benchmark's settings (``args.repeats``, ``args.seed``,
    ``args.ts2vec_iterations``, ``args.disc_iterations``, ``args.pred_iterations``)."""
    from pyroseq import metrics

    kw = dict(repeats=args.repeats, seed=args.seed)
    if name == "context_fid":
        return metrics.context_fid(real, fake, iterations=args.ts2vec_iterations, **kw)
    if name == "correlational":
        return metrics.correlational_score(real, fake, **kw)
    if name == "discriminative":
        return metrics.discriminative_score(real, fake, iterations=args.disc_iterations, **kw)
    if name == "predictive":
        return metrics.predictive_score(real, fake, iterations=args.pred_iterations, **kw)
    raise ValueError(f"unknown metric {name!r}; choose from {METRICS}")


def result_dict(result, seconds):
    """JSON form of a :class:`~pyroseq.metrics.score.MetricResult`."""
    return dict(mean=float(result.mean), ci=float(result.ci), values=[float(v) for v in result.values],
                seconds=seconds)


def score_cell(cell, path, real, fake, args, label, discriminative_real=None, names=METRICS):
    """Add every metric of ``names`` (default: all of :data:`METRICS`) missing from ``cell["metrics"]``, writing
    ``path`` after each (so an interrupted run resumes at the next metric). ``discriminative_real`` (default
    ``real``) are the real windows of the discriminative score, which wants as many real windows as fake ones."""
    cell.setdefault("metrics", {})
    for name in names:
        if name in cell["metrics"]:
            continue
        t = time.time()
        ref = discriminative_real if name == "discriminative" and discriminative_real is not None else real
        result = score(name, ref, fake, args)
        cell["metrics"][name] = result_dict(result, time.time() - t)
        write_json(path, cell)
        log(f"{label}: {name} = {result}")
    return cell
