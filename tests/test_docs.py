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


def test_api_reference_lists_the_new_modules():
    # the networks of DiM-TS and Stage-Diff are documented module by module
    api = (DOCS / "api.rst").read_text()
    for module in ("nn.lag_fusion", "nn.permutation_scan", "nn.decomposition", "nn.stage_fusion", "diffusion.samplers",
                   "metrics.ts2vec"):
        assert f".. automodule:: pyroseq.{module}\n" in api, module
