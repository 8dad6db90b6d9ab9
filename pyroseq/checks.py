"""Argument checks shared across pyroseq: each returns the normalised value or raises a ValueError that names
the argument."""

import math

__all__ = ["positive_int", "nonnegative_int", "nonnegative_float"]


def _integer(value, low):
    try:
        return not isinstance(value, bool) and int(value) == value and int(value) >= low
    except (TypeError, ValueError, OverflowError):
        return False


def positive_int(name, value):
    """``value`` as an ``int >= 1`` (integral floats accepted; bools are not)."""
    if not _integer(value, 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def nonnegative_int(name, value):
    """``value`` as an ``int >= 0`` (integral floats accepted; bools are not)."""
    if not _integer(value, 0):
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def nonnegative_float(name, value):
    """``value`` as a finite ``float >= 0``."""
    try:
        ok = float(value) >= 0 and math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
    return float(value)
