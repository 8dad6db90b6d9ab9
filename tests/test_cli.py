import json
import subprocess
import sys

import pytest

import pyroseq
from pyroseq.cli import CONFIG_MODELS, build_parser, main


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


# -- fit / forecast / generate / evaluate / config ----------------------------------------------------------

SUBCOMMANDS = ["demo", "fit", "forecast", "backtest", "generate", "evaluate", "impute", "config"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"usage: pyroseq {command}" in capsys.readouterr().out


def test_demo_options_unchanged():
    args = build_parser().parse_args(["demo"])
    assert (args.out, args.steps, args.seed, args.threads, args.no_progress) == ("demo_output", None, 0, 1, False)


def _tiny_config(tmp_path, **changes):
    config = dict(model="ddssm", model_kwargs=dict(latent_dim=1, rnn_dim=8, hidden_dim=8, denoiser_dim=8,
                                                   denoiser_blocks=1, num_steps=2),
                  data=dict(name="bimodal", length=10, kwargs=dict(num_samples=40)),
                  train=dict(num_steps=4, batch_size=8), forecast=dict(horizon=3, num_samples=5, max_series=4))
    config.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_fit_forecast_evaluate_end_to_end(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["fit", "--config", _tiny_config(tmp_path), "--run-dir", run, "--no-progress"]) == 0
    assert main(["backtest", "--run-dir", run, "--num-samples", "7"]) == 0
    assert "coverage_90" in capsys.readouterr().out
    assert main(["evaluate", "--run-dir", run, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "crps" in out and "coverage_90" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"] == "ddssm" and metrics["horizon"] == 3
    written = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"loss.png", "forecast.png", "checkpoint.pt", "forecast.npz", "backtest.json", "backtest.png"} <= written


def test_generate_writes_samples(tmp_path, capsys):
    run = str(tmp_path / "run")
    config = _tiny_config(tmp_path, model="stagediff", data=dict(name="sines", length=8, kwargs=dict(num_samples=20)),
                          model_kwargs=dict(stage_length=4, d_model=8, num_heads=2, patch_size=2, num_steps=2))
    assert main(["fit", "--config", config, "--run-dir", run, "--no-progress"]) == 0
    assert main(["generate", "--run-dir", run, "--num-samples", "3", "--length", "12", "--no-progress"]) == 0
    assert "(3, 12, 5)" in capsys.readouterr().out


def test_config_command_prints_a_valid_config(capsys, tmp_path):
    assert main(["config", "dimts"]) == 0
    path = tmp_path / "c.json"
    path.write_text(capsys.readouterr().out)
    from pyroseq.runs import load_config

    assert load_config(path)["model"] == "dimts"


@pytest.mark.parametrize("config, message", [
    ({"model": "ddsm", "data": "bimodal"}, "unknown model 'ddsm'"),
    ({"model": "ddssm", "data": "bimodal", "trian": {}}, "unknown key 'trian'"),
    ({"model": "ddssm", "data": {"name": "bimodal", "length": "32"}}, "data.length must be an integer"),
    ({"model": "ddssm", "data": "no_such_data"}, "unknown dataset 'no_such_data'"),
    ({"model": "dkf", "data": "bimodal", "model_kwargs": {"foo": 1}}, "unexpected keyword argument 'foo'"),
    ({"model": "dkf", "data": "bimodal", "train": {"kl_schedule": ["lin", 1, 1.0]}}, "train.kl_schedule"),
])
def test_bad_config_gives_one_line_error_and_status_2(config, message, tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    assert main(["fit", "--config", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyroseq fit: error:") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, message", [
    (["fit", "--config", "{tmp}/missing.json", "--run-dir", "{tmp}/r"], "missing.json does not exist"),
    (["fit", "--run-dir", "{tmp}/none"], "give --config to start a new run"),
    (["forecast", "--run-dir", "{tmp}/none"], "run directory {tmp}/none does not exist"),
    (["generate", "--run-dir", "{tmp}/none"], "does not exist"),
    (["evaluate", "--run-dir", "{tmp}/none"], "does not exist"),
])
def test_missing_files_give_one_line_error_and_status_2(argv, message, tmp_path, capsys):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and "Traceback" not in err


def test_bad_json_and_bad_option_values(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text('{"model": ')
    assert main(["fit", "--config", str(path), "--run-dir", str(tmp_path / "r")]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    run = str(tmp_path / "run")
    assert main(["fit", "--config", _tiny_config(tmp_path), "--run-dir", run, "--num-steps", "1", "--no-progress"]) == 0
    assert main(["backtest", "--run-dir", run, "--horizon", "10"]) == 2
    assert "horizon must be smaller than the window length 10" in capsys.readouterr().err
    assert main(["backtest", "--run-dir", run, "--num-samples", "0"]) == 2
    assert "num_samples must be a positive integer" in capsys.readouterr().err


def test_console_script_error_has_no_traceback(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"model": "nope", "data": "bimodal"}')
    out = subprocess.run([sys.executable, "-m", "pyroseq.cli", "fit", "--config", str(path), "--run-dir",
                          str(tmp_path / "r")], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("pyroseq fit: error:") and "Traceback" not in out.stderr


# -- conditional / latent_diffusion and impute ---------------------------------------------------------------

TINY_CSDI = dict(channels=8, num_layers=1, time_embedding_dim=8, channel_embedding_dim=4)


def test_config_command_knows_every_model():
    from pyroseq.runs import MODELS

    assert set(CONFIG_MODELS) == set(MODELS)


@pytest.mark.parametrize("model", ["conditional", "latent_diffusion"])
def test_config_command_templates_of_the_diffusion_forecasters(model, capsys, tmp_path):
    assert main(["config", model]) == 0
    path = tmp_path / "c.json"
    path.write_text(capsys.readouterr().out)
    from pyroseq.runs import load_config

    config = load_config(path)
    assert config["model"] == model and config["forecast"]["horizon"] < config["data"]["length"]


def _write_csv(path, rows, blank=()):
    """A ``time,a,b`` series; cells in ``blank`` ((row, column) pairs) left empty."""
    import math

    lines = ["time,a,b"]
    for i in range(rows):
        cells = [f"t{i}", repr(10.0 + math.sin(i / 2) + i / 7), repr(-2.5e-3 * math.cos(i / 3) + 1 / (i + 3))]
        for r, c in blank:
            if r == i:
                cells[1 + c] = ""
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return [line.split(",") for line in lines]


def _parse(path):
    return [line.split(",") for line in path.read_text().splitlines()]


def test_conditional_fit_forecast_impute_end_to_end(tmp_path, capsys):
    _write_csv(tmp_path / "train.csv", 48)
    config = _tiny_config(tmp_path, model="conditional", model_kwargs=dict(backbone="csdi", num_steps=2, **TINY_CSDI),
                          data=dict(name=str(tmp_path / "train.csv"), length=8))
    run = str(tmp_path / "run")
    assert main(["fit", "--config", config, "--run-dir", run, "--no-progress"]) == 0
    assert main(["backtest", "--run-dir", run, "--num-samples", "4"]) == 0
    assert "backtest: 4 origins" in capsys.readouterr().out
    assert main(["evaluate", "--run-dir", run, "--no-progress"]) == 0
    assert "crps" in capsys.readouterr().out

    blank = [(0, 0), (3, 1), (9, 0), (9, 1), (18, 1)]  # 19 rows: windows 0-7, 8-15 and 11-18
    source = _write_csv(tmp_path / "gaps.csv", 19, blank)
    out = tmp_path / "filled.csv"
    assert main(["impute", "--run-dir", run, "--input", str(tmp_path / "gaps.csv"), "--output", str(out),
                 "--num-samples", "3", "--quantiles", "0.25", "0.75"]) == 0
    assert "imputed 5 cells" in capsys.readouterr().out
    filled = _parse(out)
    assert filled[0] == source[0] and len(filled) == len(source)
    for row, (got, want) in enumerate(zip(filled[1:], source[1:])):
        assert got[0] == want[0]
        for c in (1, 2):
            if (row, c - 1) in blank:
                assert got[c] != "" and float(got[c]) == float(got[c])  # a finite number, not NaN
            else:
                assert float(got[c]) == float(want[c])  # bit-identical after the CSV round trip
    low, high = _parse(tmp_path / "filled_q0.25.csv"), _parse(tmp_path / "filled_q0.75.csv")
    for row, c in blank:
        assert float(low[1 + row][1 + c]) <= float(filled[1 + row][1 + c]) <= float(high[1 + row][1 + c])


def test_latent_diffusion_fit_forecast_end_to_end(tmp_path, capsys):
    config = _tiny_config(tmp_path, model="latent_diffusion",
                          model_kwargs=dict(latent_dim=1, rnn_dim=8, hidden_dim=8, denoiser_dim=8, num_steps=2,
                                            backbone="csdi", emission_num_steps=2, emission_net_kwargs=TINY_CSDI))
    run = str(tmp_path / "run")
    assert main(["fit", "--config", config, "--run-dir", run, "--no-progress"]) == 0
    assert main(["backtest", "--run-dir", run, "--num-samples", "4"]) == 0
    assert "backtest: 4 origins" in capsys.readouterr().out
    assert main(["evaluate", "--run-dir", run, "--no-progress"]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["model"] == "latent_diffusion"


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_impute")
    _write_csv(root / "train.csv", 40)
    config = dict(model="conditional", model_kwargs=dict(backbone="csdi", num_steps=2, **TINY_CSDI),
                  data=dict(name=str(root / "train.csv"), length=8), train=dict(num_steps=2, batch_size=8),
                  forecast=dict(horizon=3))
    (root / "config.json").write_text(json.dumps(config))
    assert main(["fit", "--config", str(root / "config.json"), "--run-dir", str(root / "run"), "--no-progress"]) == 0
    return root


@pytest.mark.parametrize("content, message", [
    ("time,a,c\n" + "t,1,2\n" * 8, "lacks column(s) 'b'"),
    ("a,b\n" + "1,2\n" * 7, "has 7 rows, fewer than the model's window length 8"),
    ("a,b\n" + ",\n" * 8, "has no observed value"),
    ("a,b\n" + "1,2\n" * 7 + "inf,2\n", "column 'a' has an infinite value ('inf') in data row 8"),
    ("a,b\n" + "1,2\n" * 7 + "1,x\n", "column 'b' has non-numeric value 'x' in data row 8"),
    (None, "input file"),
])
def test_impute_errors_are_one_line_with_status_2(conditional_run, content, message, tmp_path, capsys):
    path = tmp_path / "input.csv"
    if content is not None:
        path.write_text(content)
    assert main(["impute", "--run-dir", str(conditional_run / "run"), "--input", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyroseq impute: error:") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_impute_refuses_other_models_and_missing_runs(tmp_path, capsys):
    _write_csv(tmp_path / "in.csv", 10)
    run = str(tmp_path / "run")
    assert main(["fit", "--config", _tiny_config(tmp_path), "--run-dir", run, "--num-steps", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["impute", "--run-dir", run, "--input", str(tmp_path / "in.csv")]) == 2
    err = capsys.readouterr().err
    assert "holds model 'ddssm', which does not impute" in err and len(err.strip().splitlines()) == 1
    assert main(["impute", "--run-dir", str(tmp_path / "none"), "--input", str(tmp_path / "in.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["impute", "--run-dir", run, "--input", str(tmp_path / "in.csv"), "--num-samples", "0"]) == 2
    assert "num_samples must be a positive integer" in capsys.readouterr().err


# -- error reporting -------------------------------------------------------------------------------------------

def _fit_argv(tmp_path, *extra):
    return ["fit", "--config", _tiny_config(tmp_path), "--run-dir", str(tmp_path / "run"), "--no-progress", *extra]


def test_diverged_training_names_the_step_and_keeps_the_losses(tmp_path, capsys, monkeypatch):
    import pyroseq.inference
    from pyroseq.inference import NonFiniteError

    real_fit = pyroseq.inference.fit

    def diverging_fit(*args, callback=None, **kwargs):
        def stop(step, loss):
            callback(step, loss)
            if step == 2:
                raise NonFiniteError("the loss is not finite at step 3: nan", step=3)
        return real_fit(*args, callback=stop, **kwargs)

    monkeypatch.setattr(pyroseq.inference, "fit", diverging_fit)
    assert main(_fit_argv(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyroseq fit: error: training diverged at step 3:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert json.loads((tmp_path / "run" / "losses.json").read_text())["stopped_at_step"] == 3


def test_unexpected_errors_keep_their_traceback(tmp_path, capsys, monkeypatch):
    import pyroseq.runs

    def broken(*args, **kwargs):
        raise ValueError("an internal bug, not the user's input")

    monkeypatch.setattr(pyroseq.runs, "run_fit", broken)
    assert main(_fit_argv(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "an internal bug" in err and "unexpected ValueError" in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_of_a_usage_error(tmp_path, capsys, where):
    path = tmp_path / "bad.json"
    path.write_text('{"model": "nope", "data": "bimodal"}')
    argv = ["fit", "--config", str(path), "--run-dir", str(tmp_path / "r")]
    argv = ["--debug"] + argv if where == "before" else argv + ["--debug"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "UsageError" in err and "pyroseq fit: error:" in err and "model 'nope'" in err


def test_a_resumed_fit_says_where_it_resumes(tmp_path, capsys):
    assert main(_fit_argv(tmp_path, "--num-steps", "2")) == 0
    assert "resuming" not in capsys.readouterr().out
    assert main(["fit", "--run-dir", str(tmp_path / "run"), "--num-steps", "4", "--no-progress"]) == 0
    assert "resuming from step 2 of" in capsys.readouterr().out


def test_ctrl_c_during_fit_writes_the_losses_of_the_steps_done(tmp_path, capsys, monkeypatch):
    import os
    import signal

    import pyroseq.inference

    real_fit = pyroseq.inference.fit

    def interrupted_fit(*args, callback=None, **kwargs):
        def press_ctrl_c(step, loss):
            callback(step, loss)
            if step == 1:
                os.kill(os.getpid(), signal.SIGINT)
        return real_fit(*args, callback=press_ctrl_c, **kwargs)

    monkeypatch.setattr(pyroseq.inference, "fit", interrupted_fit)
    # A test run started in the background ignores SIGINT; give this test the interactive default meanwhile.
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert main(_fit_argv(tmp_path)) == 130
        handler = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, outer)
    captured = capsys.readouterr()
    assert "interrupted after step 3" in captured.out and "pyroseq fit: interrupted" in captured.err
    losses = json.loads((tmp_path / "run" / "losses.json").read_text())
    assert len(losses["losses"]) == 3 and losses["stopped_at_step"] == 3
    assert handler is signal.default_int_handler  # the handler is restored
