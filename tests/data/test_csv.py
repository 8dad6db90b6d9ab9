import hashlib

import numpy as np
import pytest

from pyroseq.data import PACKAGED_DATA_DIR, data_search_paths, find_data_file, load_csv, load_etth, load_stocks

# sha256 of the published files (ETTh1.csv of zhouhaoyi/ETDataset, stock_data.csv of jsyoon0823/TimeGAN); the
# packaged copies must stay byte-identical to them (ETTh1's CC BY-ND 4.0 licence allows unmodified copies only).
PACKAGED_SHA256 = {
    "ETTh1.csv": "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
    "stock_data.csv": "134b8a00eb4eefa3242dd7ae85144082da80dedf75a1a656d5d08f97cd95277a",
}

ETTH_HEADER = "date,HUFL,HULL,MUFL,MULL,LUFL,LULL,OT\n"
STOCK_HEADER = "Open,High,Low,Close,Adj_Close,Volume\n"


def _write_etth(path, rows=30):
    rng = np.random.default_rng(0)
    lines = ["2016-07-01 {:02d}:00:00,".format(i % 24) + ",".join("{:.3f}".format(v)
             for v in rng.normal(size=7)) for i in range(rows)]
    path.write_text(ETTH_HEADER + "\n".join(lines) + "\n")


def _write_stocks(path, rows=30):
    rng = np.random.default_rng(1)
    lines = [",".join("{:.4f}".format(v) for v in rng.uniform(1, 2, size=6)) for _ in range(rows)]
    path.write_text(STOCK_HEADER + "\n".join(lines) + "\n")


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("PYROSEQ_DATA", raising=False)


def test_load_csv_drops_date(tmp_path):
    _write_etth(tmp_path / "ETTh1.csv")
    frame = load_csv(tmp_path / "ETTh1.csv")
    assert list(frame.columns) == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert frame.shape == (30, 7) and (frame.dtypes == np.float64).all()
    sub = load_csv(tmp_path / "ETTh1.csv", columns=["OT", "HUFL"])
    assert list(sub.columns) == ["OT", "HUFL"]
    np.testing.assert_array_equal(sub["OT"].to_numpy(), frame["OT"].to_numpy())


@pytest.mark.parametrize("text,kwargs,match", [
    ("a,b\n1,2\n3,4\n", dict(columns=["c"]), r"columns \['c'\] not in"),
    ("a,b\n1,x\n3,4\n", {}, r"columns \['b'\] .* not numeric"),
    ("a,b\n1,\n3,4\n", {}, r"columns \['b'\] .* missing"),
    ("a,b\n", {}, "no data rows"),
    ("date\n2020-01-01\n", {}, "no numeric columns"),
])
def test_load_csv_errors(tmp_path, text, kwargs, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_csv(path, **kwargs)


def test_load_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_csv(tmp_path / "nope.csv")


def test_search_order(tmp_path, monkeypatch):
    user, env = tmp_path / "user", tmp_path / "env"
    user.mkdir()
    env.mkdir()
    monkeypatch.setenv("PYROSEQ_DATA", str(env))
    paths = data_search_paths(user)
    assert paths[0] == user and paths[1] == env
    assert paths[2:] == [PACKAGED_DATA_DIR]
    _write_stocks(env / "stock_data.csv")
    assert find_data_file("stock_data.csv") == env / "stock_data.csv"
    _write_stocks(user / "stock_data.csv", rows=12)
    assert find_data_file("stock_data.csv", root=user) == user / "stock_data.csv"
    assert load_stocks(root=user).shape == (12, 6)
    assert load_stocks().shape == (30, 6)


def test_not_found_lists_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("PYROSEQ_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as info:
        find_data_file("missing_file.csv", root=tmp_path / "user")
    message = str(info.value)
    assert "missing_file.csv" in message
    assert str(tmp_path / "user") in message and str(tmp_path / "env") in message
    assert "PYROSEQ_DATA" in message


def test_load_etth_alias(tmp_path, no_env):
    _write_etth(tmp_path / "ETTh.csv", rows=20)
    assert load_etth(root=tmp_path).shape == (20, 7)


@pytest.mark.parametrize("name", sorted(PACKAGED_SHA256))
def test_packaged_files_are_the_published_bytes(name):
    path = PACKAGED_DATA_DIR / name
    assert path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PACKAGED_SHA256[name]


def test_packaged_files_are_found_without_configuration(no_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing beside the working directory either
    assert find_data_file("ETTh1.csv") == PACKAGED_DATA_DIR / "ETTh1.csv"
    assert find_data_file("stock_data.csv") == PACKAGED_DATA_DIR / "stock_data.csv"


def test_real_stocks(no_env):
    frame = load_stocks()
    assert frame.shape == (3685, 6)
    assert frame["Open"].iloc[0] < 60 and frame["Open"].iloc[-1] > 1000  # chronological, no flip


def test_real_etth(no_env):
    assert load_etth().shape == (17420, 7)
