"""Calendar covariates of a timestamped series: the phase of every step in the day, week, month or year as a
sine/cosine pair, computed from the timestamps, so that future steps get theirs from the timestamps that
continue the file."""

import math

import numpy as np

from .errors import UsageError

__all__ = ["CALENDAR_FEATURES", "calendar_covariates", "check_calendar", "table_calendar"]

#: The features of ``data.calendar``: each is the phase (in ``[0, 1)``) of a step in a cycle.
CALENDAR_FEATURES = ("hour_of_day", "day_of_week", "day_of_month", "day_of_year")


def check_calendar(features):
    """The list of calendar features, each one of :data:`CALENDAR_FEATURES`, without repeats.

    :raises UsageError: naming an unknown or repeated feature.
    """
    out = []
    for name in features:
        if name not in CALENDAR_FEATURES:
            raise UsageError(f"config: data.calendar has unknown feature {name!r}; choose among "
                             f"{', '.join(CALENDAR_FEATURES)}")
        if name in out:
            raise UsageError(f"config: data.calendar lists {name!r} twice")
        out.append(name)
    return out


def _phases(times, name):
    """The phase in ``[0, 1)`` of every timestamp in the cycle of feature ``name``."""
    hour = np.asarray(times.hour + times.minute / 60 + times.second / 3600, dtype=np.float64)
    if name == "hour_of_day":
        return hour / 24
    if name == "day_of_week":
        return (np.asarray(times.day_of_week) + hour / 24) / 7
    if name == "day_of_month":
        return (np.asarray(times.day) - 1 + hour / 24) / np.asarray(times.days_in_month)
    days = np.where(np.asarray(times.is_leap_year), 366.0, 365.0)
    return (np.asarray(times.day_of_year) - 1 + hour / 24) / days


def calendar_covariates(times, features):
    r"""Calendar covariates of timestamps: for every feature, :math:`\sin 2\pi\phi` and :math:`\cos 2\pi\phi`
    of the step's phase :math:`\phi` in the cycle (``hour_of_day``: the time of day; ``day_of_week``: Monday
    0:00 is 0; ``day_of_month`` and ``day_of_year``: the first day at 0:00 is 0).

    :param pandas.DatetimeIndex times: ``T`` timestamps.
    :param list features: names from :data:`CALENDAR_FEATURES`.
    :returns: float32 array ``(T, 2 * len(features))``, columns ``sin, cos`` per feature in order.
    """
    columns = []
    for name in features:
        phase = 2 * math.pi * _phases(times, name)
        columns += [np.sin(phase), np.cos(phase)]
    return np.stack(columns, -1).astype(np.float32) if columns else np.zeros((len(times), 0), dtype=np.float32)


def table_calendar(table, features, horizon=0):
    """Calendar covariates of the rows of a :class:`~pyroseq.runs.SeriesTable`, followed by those of
    ``horizon`` future rows (timestamps continued with :meth:`~pyroseq.runs.SeriesTable.future_datetimes`).

    :param table: the series.
    :param list features: calendar features.
    :param int horizon: future rows.
    :returns: float32 array ``(T + horizon, 2 * len(features))``.
    :raises UsageError: if the file has no readable time column of dates, or its future cannot be told.
    """
    times, reason = table.datetimes()
    if times is None:
        raise UsageError(f"the run uses calendar covariates (data.calendar), which need dates: {reason}")
    if horizon:
        future, reason = table.future_datetimes(horizon)
        if future is None:
            raise UsageError(f"the run uses calendar covariates (data.calendar), which need the timestamps of the "
                             f"future steps: {reason}")
        times = times.append(future)
    return calendar_covariates(times, features)
