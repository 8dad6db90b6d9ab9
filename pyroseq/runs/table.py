"""Reading a user's series from a CSV file: numeric columns with empty or ``NaN`` cells as missing values,
an optional time column, and the timestamps that continue it; writing tables back."""

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import UsageError

__all__ = ["MISSING_MARKERS", "TIME_COLUMNS", "SeriesTable", "read_series_csv"]

#: Cells read as missing (besides empty ones), compared case-insensitively.
MISSING_MARKERS = ("nan", "na", "n/a", "null", "none")
#: Names (compared case-insensitively) of the column holding the time of each row.
TIME_COLUMNS = ("date", "datetime", "time", "timestamp", "ds")
#: Layouts tried, in order, to write future timestamps in the style of the file.
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d",
                 "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%d/%m/%Y %H:%M", "%d/%m/%Y", "%m/%d/%Y",
                 "%d.%m.%Y %H:%M", "%d.%m.%Y", "%Y-%m")


@dataclass
class SeriesTable:
    """A series read by :func:`read_series_csv`.

    :ivar str path: the file.
    :ivar frame: the whole file as a :class:`pandas.DataFrame` of strings (cells exactly as written).
    :ivar tuple columns: the channel names, in the order of ``values``.
    :ivar numpy.ndarray values: float64 array ``(T, C)``, NaN at the missing cells.
    :ivar str time_column: the name of the time column, or None.
    """

    path: str
    frame: object
    columns: tuple
    values: np.ndarray
    time_column: str = None

    @property
    def observed(self):
        """Boolean array ``(T, C)``, True where a value was given."""
        return np.isfinite(self.values)

    def _time_cells(self):
        if self.time_column is None:
            return None, f"{self.path} has no time column (one named {', '.join(TIME_COLUMNS)})"
        cells = [str(c).strip() for c in self.frame[self.time_column]]
        if len(cells) < 2:
            return None, f"column {self.time_column!r} needs at least two rows to continue"
        return cells, None

    def datetimes(self):
        """The time column as dates.

        :returns: ``(times, None)`` with a :class:`pandas.DatetimeIndex`, or ``(None, reason)`` if the file
            has no time column or it does not hold dates.
        """
        cells, reason = self._time_cells()
        if cells is None:
            return None, reason
        return _parse_datetimes(cells, self.time_column)

    def future_datetimes(self, horizon):
        """The dates of ``horizon`` rows after the last one: the frequency pandas infers
        (:func:`pandas.infer_freq`), or else the most common spacing if at least half of the rows have it.

        :param int horizon: number of future rows ``H``.
        :returns: ``(future, None)`` with a :class:`pandas.DatetimeIndex` of ``H`` dates, or ``(None, reason)``.
        """
        times, reason = self.datetimes()
        if times is None:
            return None, reason
        return _continue_datetimes(times, horizon, self.time_column)

    def future_times(self, horizon):
        """The time column continued by ``horizon`` rows, in the file's layout.

        A numeric time column continues with its step; dates and times continue as
        :meth:`future_datetimes` says.

        :param int horizon: number of future rows ``H``.
        :returns: ``(values, None)`` with a list of ``H`` strings, or ``(None, reason)`` if the file has no
            time column or its spacing cannot be told.
        """
        cells, reason = self._time_cells()
        if cells is None:
            return None, reason
        numbers = _parse_numbers(cells)
        if numbers is not None:
            step = _common_step(np.diff(numbers))
            if step is None or not step > 0:
                return None, f"the values of column {self.time_column!r} are not evenly spaced"
            future = numbers[-1] + step * np.arange(1, horizon + 1)
            integral = all(float(v).is_integer() for v in numbers) and float(step).is_integer()
            return [str(int(v)) if integral else repr(float(v)) for v in future], None
        times, reason = _parse_datetimes(cells, self.time_column)
        if times is None:
            return None, reason
        future, reason = _continue_datetimes(times, horizon, self.time_column)
        if future is None:
            return None, reason
        layout = next((f for f in _TIME_FORMATS if times[0].strftime(f) == cells[0]
                       and times[-1].strftime(f) == cells[-1]), None)
        return [t.isoformat(sep=" ") if layout is None else t.strftime(layout) for t in future], None


def _parse_numbers(cells):
    try:
        values = np.array(cells, dtype=object).astype(np.float64)
    except (TypeError, ValueError):
        return None
    return values if np.isfinite(values).all() else None


def _common_step(diffs):
    """The spacing of most differences (at least half of them), or None."""
    if len(diffs) == 0:
        return None
    values, counts = np.unique(diffs, return_counts=True)
    best = counts.argmax()
    return values[best] if 2 * counts[best] >= len(diffs) else None


def _parse_datetimes(cells, name):
    import pandas as pd

    if _parse_numbers(cells) is not None:
        return None, f"column {name!r} holds numbers, not dates"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # format inference notices
        try:
            times = pd.DatetimeIndex(pd.to_datetime(cells))
        except (ValueError, TypeError, OverflowError):
            return None, f"column {name!r} does not hold dates or numbers"
    if times.isna().any():
        return None, f"column {name!r} has empty or unreadable times"
    return times, None


def _continue_datetimes(times, horizon, name):
    import pandas as pd

    freq = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # frequency-string notices
        if len(times) >= 3 and times.is_monotonic_increasing:
            try:
                freq = pd.infer_freq(times)
            except (TypeError, ValueError):
                freq = None
        if freq is not None:
            return pd.date_range(times[-1], periods=horizon + 1, freq=pd.tseries.frequencies.to_offset(freq))[1:], None
    step = _common_step(np.diff(times.asi8))
    if step is None or step <= 0:
        return None, f"the times of column {name!r} are not evenly spaced (no frequency could be inferred)"
    delta = pd.to_timedelta(int(step), unit=times.unit)
    return pd.DatetimeIndex([times[-1] + k * delta for k in range(1, horizon + 1)]), None


def _find_time_column(header, columns):
    return next((name for name in header if name.strip().lower() in TIME_COLUMNS and name not in columns), None)


def _cell_value(cell):
    """The number in a stripped cell, NaN for a missing value, None for text."""
    if cell == "" or cell.lower() in MISSING_MARKERS:
        return math.nan
    try:
        return float(cell)
    except ValueError:
        return None


def read_series_csv(path, columns=None, what="input file"):
    """Read a multivariate series from a CSV file with a header row.

    Empty cells and ``NaN`` (or ``NA``, ``null``, ``none``, any case) are missing values. Cells are read as
    text and parsed with Python's ``float``, so numbers are exact whatever the CSV parser. A column named
    ``date``, ``datetime``, ``time``, ``timestamp`` or ``ds`` (any case) is the time column; it is not a
    channel unless ``columns`` names it.

    :param str path: the CSV file.
    :param columns: the channel names to read, in this order (default: every column but the time column).
    :type columns: list or tuple
    :param str what: how messages call the file (e.g. ``"data file"``).
    :rtype: SeriesTable
    :raises FileNotFoundError: if the file does not exist.
    :raises UsageError: for an unreadable file, missing columns, no rows, or a cell that is text or
        infinite (naming its column and data row, counted from 1 below the header).
    """
    import pandas as pd

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UsageError(f"{path} is not a readable CSV file: {str(e).strip().splitlines()[0]}") from None
    header = [str(c) for c in frame.columns]
    frame.columns = header
    if columns is None:
        time_column = _find_time_column(header, ())
        columns = tuple(c for c in header if c != time_column)
        if not columns:
            raise UsageError(f"{path} has no data columns (header: {', '.join(map(repr, header))})")
    else:
        columns = tuple(str(c) for c in columns)
        missing = [c for c in columns if c not in header]
        if missing:
            raise UsageError(f"{path} lacks column(s) {', '.join(map(repr, missing))}; it needs the columns "
                             f"{', '.join(map(repr, columns))} (has {', '.join(map(repr, header))})")
        time_column = _find_time_column(header, columns)
    if len(frame) == 0:
        raise UsageError(f"{path} has no data rows")
    values = np.empty((len(frame), len(columns)), dtype=np.float64)
    for c, name in enumerate(columns):
        cells = [cell.strip() for cell in frame[name]]
        numbers = [_cell_value(cell) for cell in cells]
        if None in numbers:
            i = numbers.index(None)
            raise UsageError(f"{path}: column {name!r} has non-numeric value {cells[i]!r} in data row {i + 1}")
        values[:, c] = numbers
        bad = np.flatnonzero(np.isinf(values[:, c]))
        if bad.size:
            i = int(bad[0])
            raise UsageError(f"{path}: column {name!r} has an infinite value ({cells[i]!r}) in data row {i + 1}; "
                             f"leave the cell empty (or write NaN) for a missing value")
    return SeriesTable(path=path, frame=frame, columns=columns, values=values, time_column=time_column)


def write_frame(frame, path):
    """Write a :class:`pandas.DataFrame` as CSV (without its index) to ``path``, atomically via a temporary file;
    returns ``path``."""
    tmp = path + ".tmp"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path
