"""The tutorial notebooks: each runs top to bottom in smoke mode (``PYROSEQ_SMOKE=1``, about 10-15 s of CPU
each), the committed copies hold full-mode outputs, and their cells match their jupytext percent-format source
(``notebooks/<name>.py``)."""

import importlib.util
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOK_DIR / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code_outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def test_every_tutorial_is_committed():
    sources = set(_builder().NOTEBOOKS)
    assert len(sources) >= 6
    assert {p.stem for p in NOTEBOOKS} == sources


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_matches_its_source(path):
    import jupytext

    committed = nbformat.read(path, as_version=4)
    source = jupytext.read(path.with_suffix(".py"), fmt="py:percent")
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in source.cells]
    assert committed.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_shows_full_mode_results(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("pyroseq", {}).get("mode") == "full"
    outputs = _code_outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure in the committed outputs"
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code_cells), "not every code cell was executed"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    monkeypatch.setenv("PYROSEQ_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # Runs in a temporary directory, so nothing the notebook might write lands in the checkout.
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = _code_outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "smoke mode" in streams
