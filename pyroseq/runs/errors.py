"""The error class of the command-line runs: mistakes in a configuration, an argument or an input file,
which the user fixes (``pyroseq`` reports them in one line with exit status 2; any other exception is a
failure of the program and keeps its traceback), and the argument check the commands share."""

__all__ = ["UsageError", "check_positive"]


class UsageError(ValueError):
    """A bad configuration, argument or input file (a :class:`ValueError`). The message names what is wrong
    and where (config key, file, row and column)."""


def check_positive(name, value, default):
    """``value`` (or ``default`` if it is None), which must be a positive integer.

    :raises UsageError: naming ``name`` otherwise.
    """
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
    return value
