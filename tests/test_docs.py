"""The API reference builds without a warning: every module it lists imports, and every docstring in it is
valid reST (Sphinx ``-W``)."""

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "dummy", "-W", "--keep-going", "-q", str(DOCS), str(tmp_path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr



def test_design_notes_and_benchmarks_are_in_the_docs():
    index = (DOCS / "index.rst").read_text()
    for page in ("design", "benchmarks"):
        assert (DOCS / f"{page}.md").is_file()
        assert f"   {page}\n" in index
