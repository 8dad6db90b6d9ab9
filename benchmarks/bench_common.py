"""Pieces shared by the generation benchmarks: timestamped logging, atomic JSON cells and the training
budget clock (CPU time of this process, resumable across runs)."""

import json
import os
import time
from pathlib import Path

__all__ = ["BudgetClock", "OutOfTime", "log", "read_json", "write_json", "fill_defaults", "parse_choices"]


class OutOfTime(Exception):
    """Raised by a training callback when the CPU-time budget is spent."""


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def read_json(path):
    return json.loads(Path(path).read_text()) if Path(path).exists() else None


def write_json(path, obj):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


class BudgetClock:
    """CPU and wall seconds of training, continuing from the ``cpu_seconds`` / ``seconds`` of a saved
    meta dict. The budget is CPU time of this (single-threaded) process: on a machine shared with other
    jobs, wall time would measure the neighbours; on an idle core the two are equal."""

    def __init__(self, budget_minutes, meta=None):
        meta = meta or {}
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
        if self.cpu() > self.budget:
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
