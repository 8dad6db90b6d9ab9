"""Repository hygiene: the git tree holds source and small summaries; trained weights, sample tensors,
checkpoints and logs live in the ignored ``benchmarks/.cache/`` and the built-in data in ``pyroseq/data/``."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 1_000_000  # bytes


def _tracked_files():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not inside a git repository")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_large_tracked_file_outside_the_packaged_data():
    large = [str(p.relative_to(ROOT)) for p in _tracked_files()
             if p.is_file() and p.stat().st_size > LIMIT and not p.relative_to(ROOT).parts[:2] == ("pyroseq", "data")]
    assert not large, large


def test_no_weights_checkpoints_or_logs_are_tracked():
    artefacts = [str(p.relative_to(ROOT)) for p in _tracked_files() if p.suffix in (".pt", ".pth", ".ckpt", ".log")]
    assert not artefacts, artefacts


def test_the_benchmark_cache_is_ignored():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not inside a git repository")
    probe = "benchmarks/.cache/long_generation/models/example.pt"
    result = subprocess.run(["git", "check-ignore", "-q", probe], cwd=ROOT)
    assert result.returncode == 0
