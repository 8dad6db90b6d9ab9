"""The error class of the command-line runs: mistakes in a configuration, an argument or an input file,
which the user fixes (``pyroseq`` reports them in one line with exit status 2; any other exception is a
failure of the program and keeps its traceback)."""

__all__ = ["UsageError"]


class UsageError(ValueError):
    """A bad configuration, argument or input file (a :class:`ValueError`). The message names what is wrong
    and where (config key, file, row and column)."""
