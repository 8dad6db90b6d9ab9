import json

import pytest

from pyroseq.runs import (
    FORECASTING_MODELS,
    IMPUTING_MODELS,
    MODELS,
    SCHEMA,
    build_model,
    config_differences,
    example_config,
    load_config,
    validate_config,
)


def _minimal(**extra):
    return {"model": "ddssm", "data": "bimodal", **extra}


def test_defaults_are_filled_in():
    config = validate_config(_minimal())
    assert set(config) == set(SCHEMA)
    assert config["data"] == dict(name="bimodal", length=24, stride=1, test_fraction=0.2, max_windows=None,
                                  columns=None, calendar=None, kwargs={})
    assert config["train"]["num_steps"] == 500 and config["train"]["seed"] == 0
    assert "kl_schedule" not in config["train"]  # optional fit arguments left out unless given


def test_validation_does_not_modify_its_input():
    raw = _minimal(train={"num_steps": 3})
    before = json.dumps(raw, sort_keys=True)
    validate_config(raw)
    assert json.dumps(raw, sort_keys=True) == before


@pytest.mark.parametrize("model", MODELS)
def test_example_configs_are_valid_and_round_trip(model, tmp_path):
    config = example_config(model)
    assert config["model"] == model
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    assert load_config(path) == config


@pytest.mark.parametrize("model, obs_dim, cls", [("conditional", 5, "ConditionalDiffusion"),
                                                  ("latent_diffusion", 1, "LatentDiffusionSSM")])
def test_diffusion_forecaster_templates_build(model, obs_dim, cls):
    config = example_config(model)
    assert model in FORECASTING_MODELS and config["forecast"]["horizon"] < config["data"]["length"]
    built = build_model(config, obs_dim, config["data"]["length"])
    assert type(built).__name__ == cls and built.length == config["data"]["length"]
    assert (model in IMPUTING_MODELS) == (model == "conditional")


@pytest.mark.parametrize("model, kwargs", [
    ("conditional", dict(backbone="stagediff", stage_length=4, d_model=8, num_heads=2, num_encoder_layers=1,
                         patch_size=2, kernel_sizes=[3, 1])),
    ("latent_diffusion", dict(latent_dim=2, rnn_dim=8, hidden_dim=8, denoiser_dim=8, backbone="stagediff",
                              stage_length=4, emission_net_kwargs=dict(d_model=8, num_heads=2, num_encoder_layers=1,
                                                                       patch_size=2, kernel_sizes=[3, 1]))),
])
def test_builder_accepts_json_lists_and_leaves_the_config_alone(model, kwargs):
    config = validate_config(dict(model=model, model_kwargs=kwargs, data=dict(name="bimodal", length=8),
                                  forecast=dict(horizon=2)))
    before = json.dumps(config, sort_keys=True)
    built = build_model(config, 2, 8)
    assert json.dumps(config, sort_keys=True) == before
    net = built.net if model == "conditional" else built.emission.net
    assert net.stage_length == 4
    if model == "latent_diffusion":
        assert built.latent_dim == 2


@pytest.mark.parametrize("raw, message", [
    (dict(data="bimodal"), "missing required key 'model'"),
    (dict(model="ddssm"), "missing required key data.name"),
    (_minimal(modle_kwargs={}), "unknown key 'modle_kwargs' (did you mean 'model_kwargs'?)"),
    (dict(model="ddsm", data="bimodal"), "unknown model 'ddsm' (did you mean 'ddssm'?)"),
    (_minimal(train={"num_step": 3}), "unknown key train.num_step"),
    (_minimal(train={"num_steps": "10"}), 'train.num_steps must be an integer, got "10"'),
    (_minimal(train={"num_steps": 2.5}), "train.num_steps must be an integer"),
    (_minimal(train={"num_steps": True}), "train.num_steps must be an integer"),
    (_minimal(train={"batch_size": 0}), "train.batch_size must be >= 1"),
    (_minimal(train={"lr": 0}), "train.lr must be positive"),
    (_minimal(train={"kl_schedule": ["lin", 3, 1.0]}), "train.kl_schedule"),
    (_minimal(train={"lrs": {"encodr": 1e-3}}), "unknown parameter group 'encodr'"),
    (_minimal(model_kwargs=[1]), "model_kwargs must be an object"),
    (_minimal(data={"name": "bimodal", "test_fraction": 1.0}), "data.test_fraction must be in [0, 1)"),
    (_minimal(data={"name": "bimodal", "length": 8}, forecast={"horizon": 8}), "forecast.horizon (8) must be"),
    (_minimal(evaluate={"metrics": ["fid"]}), "unknown metric 'fid'"),
    (_minimal(train=[]), "train must be an object"),
    ([1, 2], "the top level must be an object"),
])
def test_bad_configs_name_the_problem(raw, message):
    with pytest.raises(ValueError) as exc:
        validate_config(raw)
    assert message in str(exc.value)


def test_load_config_reports_syntax_errors_and_missing_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": "ddssm",\n')
    with pytest.raises(ValueError, match="bad.json is not valid JSON: .* line 2"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"model": "ddssm", "data": "bimodal", "extra": 1}')
    with pytest.raises(ValueError, match="wrong.json: config: unknown key 'extra'"):
        load_config(wrong)


def test_toml_config(tmp_path):
    pytest.importorskip("tomllib")
    path = tmp_path / "c.toml"
    path.write_text('model = "dkf"\n[data]\nname = "bimodal"\nlength = 16\n[train]\nnum_steps = 7\n')
    config = load_config(path)
    assert config["model"] == "dkf" and config["data"]["length"] == 16 and config["train"]["num_steps"] == 7


def test_config_differences_ignore_settings_that_do_not_change_the_model():
    a = validate_config(_minimal())
    b = validate_config(_minimal(train={"num_steps": 9, "threads": 2}, evaluate={"repeats": 3}))
    assert config_differences(a, b) == []
    c = validate_config(_minimal(train={"lr": 0.1}, model_kwargs={"rnn_dim": 8}))
    assert config_differences(a, c) == ["model_kwargs", "train.lr"]
