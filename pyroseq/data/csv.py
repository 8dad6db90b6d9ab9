"""Loading CSV series, and locating the built-in data files (Google stock prices, ETTh1) that ship with the
package."""

import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DATA_ENV_VAR", "PACKAGED_DATA_DIR", "data_search_paths", "find_data_file", "load_csv", "load_stocks",
           "load_etth"]

#: Environment variable naming a directory that holds the benchmark CSV files.
DATA_ENV_VAR = "PYROSEQ_DATA"

#: Directory inside the package holding the built-in data files, byte-identical to their published copies.
PACKAGED_DATA_DIR = Path(__file__).resolve().parent / "files"

_DATE_COLUMNS = {"date", "datetime", "time", "timestamp"}


def data_search_paths(root=None):
    """
    Directories searched for data files, in order: ``root`` (if given), ``$PYROSEQ_DATA`` (if set), and
    :data:`PACKAGED_DATA_DIR`, the directory inside the package that holds the built-in files (``ETTh1.csv``,
    ``stock_data.csv``; their sources and licences are in the repository's ``NOTICE`` file).

    :param root: A user directory searched first.
    :type root: str or os.PathLike
    :rtype: list of pathlib.Path
    """
    paths = []
    if root is not None:
        paths.append(Path(root).expanduser())
    if os.environ.get(DATA_ENV_VAR):
        paths.append(Path(os.environ[DATA_ENV_VAR]).expanduser())
    paths.append(PACKAGED_DATA_DIR)
    unique = []
    for p in paths:
        if p not in unique:
            unique.append(p)
    return unique


def find_data_file(*filenames, root=None):
    """
    Locate the first existing file among ``filenames`` in :func:`data_search_paths`.

    :param str filenames: Candidate file names (e.g. ``"ETTh1.csv", "ETTh.csv"``).
    :param root: A user directory searched first.
    :type root: str or os.PathLike
    :rtype: pathlib.Path
    :raises FileNotFoundError: Listing every directory and file name that was tried.
    """
    searched = data_search_paths(root)
    for directory in searched:
        for name in filenames:
            candidate = directory / name
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        "could not find {} in any of: {}. Pass root=<directory> or set ${} to a directory that holds "
        "it".format(" or ".join(filenames), ", ".join(str(p) for p in searched), DATA_ENV_VAR)
    )


def load_csv(path, columns=None):
    """
    Load a multivariate series from a CSV file with a header row. A date/time column (named
    ``date``, ``datetime``, ``time`` or ``timestamp``, any case) is dropped; every other selected
    column must be numeric and complete.

    :param path: Path of the CSV file.
    :type path: str or os.PathLike
    :param list columns: Names of the columns to keep, in this order (default: all but the date).
    :returns: A float64 data frame of shape ``(T, C)`` in file order.
    :rtype: pandas.DataFrame
    :raises FileNotFoundError: If ``path`` does not exist.
    :raises ValueError: On unknown or non-numeric columns, missing values or an empty table.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError("path {} does not exist or is not a file".format(path))
    frame = pd.read_csv(path)
    frame = frame.drop(columns=[c for c in frame.columns if str(c).strip().lower() in _DATE_COLUMNS])
    if columns is not None:
        columns = list(columns)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError("columns {} not in {}; available: {}".format(
                missing, path.name, list(frame.columns)))
        frame = frame[columns]
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError("{} holds no data rows or no numeric columns (shape {})".format(
            path, frame.shape))
    non_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise ValueError("columns {} of {} are not numeric".format(non_numeric, path.name))
    frame = frame.astype(np.float64)
    values = frame.to_numpy()
    bad = ~np.isfinite(values).all(axis=0)
    if bad.any():
        raise ValueError("columns {} of {} contain missing or infinite values".format(
            list(frame.columns[bad]), path.name))
    return frame


def load_stocks(root=None):
    """
    Daily Google stock prices (``stock_data.csv`` of TimeGAN; 3685 x 6: Open, High, Low, Close,
    Adj_Close, Volume), in chronological order as stored (no flip).

    :param root: Directory searched first (see :func:`data_search_paths`).
    :rtype: pandas.DataFrame
    """
    return load_csv(find_data_file("stock_data.csv", root=root))


def load_etth(root=None):
    """
    ETTh1 hourly electricity-transformer data (``ETTh1.csv``, also accepted as ``ETTh.csv``;
    17420 x 7: HUFL, HULL, MUFL, MULL, LUFL, LULL, OT; the date column is dropped).

    :param root: Directory searched first (see :func:`data_search_paths`).
    :rtype: pandas.DataFrame
    """
    return load_csv(find_data_file("ETTh1.csv", "ETTh.csv", root=root))
