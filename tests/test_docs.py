"""The documentation: the Sphinx build has no warning (every module it lists imports, every docstring is valid
reST), the README stays a short user's guide, the licence files are there, and nothing in the project refers to
files outside the repository."""

import re
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


ROOT = DOCS.parent
README = (ROOT / "README.md").read_text()


def test_readme_is_a_short_users_guide():
    assert len(README.splitlines()) <= 250
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "demo"], ["make", "test"]]
    assert "pip install" in README
    for heading in ("## Your own data in five minutes", "## The Python API", "## A custom model", "## Command line",
                    "## Tutorials", "## Results"):
        assert heading in README
    for name in ("DiffusionTransition", "DiffusionLikelihood", "DKF", "DDSSM", "DiMTS", "StageDiff", "fit",
                 "forecast", "to_inference_data", "Mamba", "selective_scan", "metrics", "data"):
        assert name in README, name


def test_licence_files():
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    notice = (ROOT / "NOTICE").read_text()
    assert "ETTh1.csv" in notice and "CC BY-ND 4.0" in notice and "stock_data.csv" in notice


def _project_text_files():
    for folder in ("pyroseq", "tests", "benchmarks", "docs", "notebooks"):
        for path in sorted((ROOT / folder).rglob("*")):
            parts = path.relative_to(ROOT).parts
            if any(part.startswith(".") or part in ("__pycache__", "_build") for part in parts):
                continue  # caches, build output, the ignored benchmark cache
            if path.is_file() and path.suffix in (".py", ".md", ".rst", ".txt", ".ipynb", ".json", ".toml"):
                yield path
    yield from (ROOT / name for name in ("README.md", "Makefile", "pyproject.toml"))


def test_no_reference_outside_the_repository():
    # Built from pieces so that this file does not match itself.
    patterns = [re.compile(p) for p in (r"\.\./" + "shared", "DESIGN" + r"(\.md| §| section)", r"\b[Ii]ssue " + r"\d",
                                        "git " + r"checkout ([0-9a-f]{5,}|--)", "/" + "work/")]
    hits = []
    for path in _project_text_files():
        text = path.read_text(errors="replace")
        hits += [f"{path.relative_to(ROOT)}: {p.pattern}" for p in patterns if p.search(text)]
    assert not hits, hits
