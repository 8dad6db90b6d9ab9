import numpy as np
import pytest

from pyroseq.runs import UsageError, read_series_csv


def _write(tmp_path, text, name="series.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_empty_and_nan_cells_are_missing_and_numbers_are_exact(tmp_path):
    path = _write(tmp_path, "Date,a,b\n2026-01-01,0.1,\n2026-01-02,NaN,2\n2026-01-03, 1e3 ,NA\n")
    table = read_series_csv(path)
    assert table.columns == ("a", "b") and table.time_column == "Date"
    np.testing.assert_array_equal(table.values, [[0.1, np.nan], [np.nan, 2.0], [1000.0, np.nan]])
    np.testing.assert_array_equal(table.observed, [[True, False], [False, True], [True, False]])
    assert read_series_csv(path, columns=["b"]).columns == ("b",)


@pytest.mark.parametrize("text, message", [
    ("a,b\n1,2\n3,inf\n", "column 'b' has an infinite value ('inf') in data row 2"),
    ("a,b\n1,2\n-Infinity,4\n", "column 'a' has an infinite value ('-Infinity') in data row 2"),
    ("a,b\n1,2\n3,4\n5,six\n", "column 'b' has non-numeric value 'six' in data row 3"),
    ("station,a\nX,1\nY,2\n", "column 'station' has non-numeric value 'X' in data row 1"),
    ("a,b\n", "has no data rows"),
])
def test_text_and_infinite_cells_are_refused_with_row_and_column(tmp_path, text, message):
    with pytest.raises(UsageError, match=message.replace("(", "\\(").replace(")", "\\)")):
        read_series_csv(_write(tmp_path, text))


def test_missing_columns_and_files(tmp_path):
    with pytest.raises(UsageError, match="lacks column\\(s\\) 'c'"):
        read_series_csv(_write(tmp_path, "a,b\n1,2\n"), columns=("a", "c"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_series_csv(tmp_path / "nothing.csv")


@pytest.mark.parametrize("cells, expected", [
    (["2026-03-01 22:00:00", "2026-03-01 23:00:00", "2026-03-02 00:00:00"],
     ["2026-03-02 01:00:00", "2026-03-02 02:00:00"]),
    (["2026-03-01 22:00", "2026-03-01 23:00", "2026-03-02 00:00"], ["2026-03-02 01:00", "2026-03-02 02:00"]),
    (["2026-01-30", "2026-01-31", "2026-02-01"], ["2026-02-02", "2026-02-03"]),
    (["2026-01-31", "2026-02-28", "2026-03-31"], ["2026-04-30", "2026-05-31"]),   # month ends
    (["2026-01-01 00:00", "2026-01-01 00:15", "2026-01-01 00:45", "2026-01-01 01:00"],  # one row missing
     ["2026-01-01 01:15", "2026-01-01 01:30"]),
    (["0", "5", "10"], ["15", "20"]),
    (["0.5", "1.0", "1.5"], ["2.0", "2.5"]),
])
def test_future_times_continue_the_file(tmp_path, cells, expected):
    text = "time,a\n" + "".join(f"{c},{i}\n" for i, c in enumerate(cells))
    times, reason = read_series_csv(_write(tmp_path, text)).future_times(2)
    assert reason is None and times == expected


@pytest.mark.parametrize("text, reason", [
    ("a\n1\n2\n", "has no time column"),
    ("time,a\nt0,1\nt1,2\n", "does not hold dates or numbers"),
    ("time,a\n2026-01-01,1\n2026-01-03,2\n2026-01-04,3\n2026-01-08,4\n", "not evenly spaced"),
])
def test_future_times_explain_why_not(tmp_path, text, reason):
    times, why = read_series_csv(_write(tmp_path, text)).future_times(3)
    assert times is None and reason in why
