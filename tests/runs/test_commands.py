import json

import numpy as np
import pytest
import torch

from pyroseq.runs import (
    RunDirectory,
    format_metrics,
    load_trained,
    run_evaluate,
    run_fit,
    run_forecast,
    run_generate,
    validate_config,
)

TINY_SSM = dict(latent_dim=1, rnn_dim=8, hidden_dim=8)
QUICK_METRICS = dict(num_samples=16, max_real=32, ts2vec_iterations=2, disc_iterations=2, pred_iterations=2)


def _ssm_config(model="dkf", **train):
    kwargs = dict(TINY_SSM, **(dict(denoiser_dim=8, denoiser_blocks=1, num_steps=2) if model == "ddssm" else {}))
    return dict(model=model, model_kwargs=kwargs, data=dict(name="bimodal", length=10, kwargs=dict(num_samples=40)),
                train=dict(dict(num_steps=6, batch_size=8, checkpoint_every=3), **train),
                forecast=dict(horizon=3, num_samples=5, max_series=4))


def _quiet(*args):
    pass


@pytest.mark.parametrize("model", ["dkf", "ddssm"])
def test_fit_forecast_evaluate(tmp_path, model):
    run = RunDirectory(tmp_path / "run")
    out = run_fit(run.path, _ssm_config(model), progress=False, log=_quiet)
    assert len(out["losses"]) == 6 and all(np.isfinite(out["losses"]))
    for key in ("config", "data", "checkpoint", "losses", "loss_plot"):
        assert run.exists(key), key
    assert json.loads(open(run.losses).read())["losses"] == out["losses"]

    fc = run_forecast(run.path, log=_quiet)
    assert fc["samples"].shape == (5, 4, 3, 1)
    assert fc["history"].shape == (4, 7, 1) and fc["truth"].shape == (4, 3, 1)
    with np.load(run.forecast) as f:
        np.testing.assert_array_equal(f["samples"], fc["samples"].numpy())

    result = run_evaluate(run.path, progress=False, log=_quiet)
    assert result["source"] == "forecast.npz" and result["horizon"] == 3
    assert set(result["metrics"]) == {"crps", "crps_1", "energy_score", "energy_score_1", "coverage_50",
                                      "coverage_90"}
    assert 0 <= result["metrics"]["coverage_90"]["mean"] <= 1
    assert json.loads(open(run.metrics).read())["metrics"] == result["metrics"]
    assert "crps" in format_metrics(result)


TINY_CSDI = dict(channels=8, num_layers=1, time_embedding_dim=8, channel_embedding_dim=4)
NEW_MODELS = {
    "conditional": dict(backbone="csdi", num_steps=2, **TINY_CSDI),
    "latent_diffusion": dict(TINY_SSM, denoiser_dim=8, num_steps=2, backbone="csdi", emission_num_steps=2,
                             emission_net_kwargs=TINY_CSDI),
}


@pytest.mark.parametrize("model", sorted(NEW_MODELS))
def test_diffusion_forecasters_fit_forecast_evaluate(tmp_path, model):
    config = dict(_ssm_config(), model=model, model_kwargs=NEW_MODELS[model])
    run = RunDirectory(tmp_path)
    out = run_fit(run.path, config, progress=False, log=_quiet)
    assert len(out["losses"]) == 6 and all(np.isfinite(out["losses"]))
    _, info, trained = load_trained(run.path)
    assert trained.length == info["length"] == 10
    if model == "latent_diffusion":
        assert trained.latent_dim == 1 and trained.backbone == "csdi"
    fc = run_forecast(run.path, log=_quiet)
    assert fc["samples"].shape == (5, 4, 3, 1) and torch.isfinite(fc["samples"]).all()
    assert fc["history"].shape == (4, 7, 1) and fc["truth"].shape == (4, 3, 1)
    with np.load(run.forecast) as f:
        np.testing.assert_array_equal(f["samples"], fc["samples"].numpy())
    result = run_evaluate(run.path, progress=False, log=_quiet)
    assert result["source"] == "forecast.npz" and result["horizon"] == 3
    assert 0 <= result["metrics"]["coverage_50"]["mean"] <= 1 and np.isfinite(result["metrics"]["crps"]["mean"])
    if model == "conditional":
        with pytest.raises(ValueError, match="does not generate whole windows"):
            run_generate(run.path, num_samples=2, progress=False, log=_quiet)
    else:
        gen = run_generate(run.path, num_samples=2, progress=False, log=_quiet)
        assert gen["samples"].shape == (2, 10, 1)


@pytest.mark.parametrize("model, kwargs, message", [
    ("conditional", dict(backbone="transformer"), "bad model_kwargs for model 'conditional': backbone must be"),
    ("conditional", dict(length=5), "model_kwargs.length is set from the data"),
    ("conditional", dict(covariate_dim=2), "model_kwargs.covariate_dim is not supported"),
    ("conditional", dict(backbone="stagediff", stage_length=3), "bad model_kwargs for model 'conditional'"),
    ("conditional", dict(bogus=1), "bad model_kwargs for model 'conditional'.*bogus"),
    ("latent_diffusion", dict(backbone="nope"), "bad model_kwargs for model 'latent_diffusion': backbone must be"),
    ("latent_diffusion", dict(emission_net_kwargs=dict(bogus=1)), "bad model_kwargs for model 'latent_diffusion'"),
])
def test_diffusion_forecasters_bad_model_kwargs(tmp_path, model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_fit(tmp_path / "run", dict(_ssm_config(), model=model, model_kwargs=kwargs), log=_quiet)
    assert not (tmp_path / "run").exists()


def test_fit_resumes_and_matches_an_uninterrupted_run(tmp_path):
    first = run_fit(tmp_path / "a", _ssm_config(), num_steps=3, progress=False, log=_quiet)["losses"]
    resumed = run_fit(tmp_path / "a", None, num_steps=6, progress=False, log=_quiet)["losses"]
    straight = run_fit(tmp_path / "b", _ssm_config(), progress=False, log=_quiet)["losses"]
    assert resumed[:3] == first
    np.testing.assert_allclose(resumed, straight, rtol=1e-5)
    assert validate_config(json.loads(open(RunDirectory(tmp_path / "a").config).read()))["train"]["num_steps"] == 6


def test_fit_refuses_a_different_config_in_an_existing_run(tmp_path):
    run_fit(tmp_path, _ssm_config(), num_steps=1, progress=False, log=_quiet)
    with pytest.raises(ValueError, match="different config .*train.lr"):
        run_fit(tmp_path, _ssm_config(lr=0.5), progress=False, log=_quiet)


def test_missing_runs_and_model_mismatches(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist .*pyroseq fit"):
        load_trained(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no config stored"):
        run_fit(tmp_path / "nothing", None, log=_quiet)
    with pytest.raises(ValueError, match="bad model_kwargs for model 'dkf'.*bogus"):
        run_fit(tmp_path / "x", dict(_ssm_config(), model_kwargs={"bogus": 1}), log=_quiet)
    assert not (tmp_path / "x").exists()  # nothing written for an invalid config


@pytest.mark.parametrize("model, kwargs, length, gen_length", [
    ("dimts", dict(hidden_dim=8, d_state=2, num_steps=2, num_decoder_layers=1), 8, 6),
    ("stagediff", dict(stage_length=4, d_model=8, num_heads=2, patch_size=2, num_encoder_layers=1, num_steps=2),
     8, 20),
])
def test_generative_runs(tmp_path, model, kwargs, length, gen_length):
    config = dict(model=model, model_kwargs=kwargs,
                  data=dict(name="sines", length=length, kwargs=dict(num_samples=40, channels=2)),
                  train=dict(num_steps=2, batch_size=8), evaluate=QUICK_METRICS)
    run = RunDirectory(tmp_path)
    run_fit(run.path, config, progress=False, log=_quiet)
    with pytest.raises(ValueError, match="does not forecast"):
        run_forecast(run.path, log=_quiet)
    gen = run_generate(run.path, num_samples=5, length=gen_length, progress=False, log=_quiet)
    assert gen["samples"].shape == (5, gen_length, 2)
    assert run.exists("generated") and run.exists("generated_plot")
    result = run_evaluate(run.path, progress=False, log=_quiet)
    assert result["source"] == "new samples"  # generated.npz has another length
    assert set(result["metrics"]) == {"context_fid", "correlational", "discriminative", "predictive"}
    assert all(np.isfinite(m["mean"]) for m in result["metrics"].values())


def test_generative_model_on_unscaled_data_is_scaled_to_unit_range(tmp_path):
    config = dict(model="dimts", model_kwargs=dict(hidden_dim=8, d_state=2, num_steps=2, num_decoder_layers=1),
                  data=dict(name="bimodal", length=6, kwargs=dict(num_samples=20)), train=dict(num_steps=1),
                  evaluate=dict(QUICK_METRICS, metrics=["discriminative"]))
    run_fit(tmp_path, config, progress=False, log=_quiet)
    info = json.loads(open(RunDirectory(tmp_path).data).read())
    assert info["scale"] is not None and info["scale"]["min"][0] < -1
    samples = run_generate(tmp_path, num_samples=4, progress=False, log=_quiet)["samples"]
    lo, hi = info["scale"]["min"][0], info["scale"]["max"][0]
    assert torch.all((samples >= lo - 1e-4) & (samples <= hi + 1e-4))
    result = run_evaluate(tmp_path, progress=False, log=_quiet)
    assert result["source"] == "generated.npz" and list(result["metrics"]) == ["discriminative"]


def test_dimts_cannot_generate_longer_than_trained(tmp_path):
    config = dict(model="dimts", model_kwargs=dict(hidden_dim=8, d_state=2, num_steps=2, num_decoder_layers=1),
                  data=dict(name="sines", length=6, kwargs=dict(num_samples=20, channels=2)), train=dict(num_steps=1))
    run_fit(tmp_path, config, progress=False, log=_quiet)
    with pytest.raises(ValueError, match="cannot generate.*at most the trained window length 6"):
        run_generate(tmp_path, length=7, log=_quiet)
