import subprocess
import sys

import pytest

import pyroseq
from pyroseq.cli import build_parser, main


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: pyroseq" in out and "demo" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"pyroseq {pyroseq.__version__}"


def test_demo_help_and_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--out" in capsys.readouterr().out
    args = build_parser().parse_args(["demo", "--out", "somewhere", "--steps", "7"])
    assert args.command == "demo" and args.out == "somewhere" and args.steps == 7


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: pyroseq" in capsys.readouterr().out


def test_unknown_command():
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_console_script_module():
    out = subprocess.run([sys.executable, "-m", "pyroseq.cli", "--version"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == f"pyroseq {pyroseq.__version__}"
