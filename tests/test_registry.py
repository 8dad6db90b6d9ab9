import subprocess
import sys

import pytest

from pyroseq.registry import MODEL_REGISTRY, get_model_entry, model_names


@pytest.mark.parametrize("name", list(MODEL_REGISTRY))
def test_every_entry_builds_its_model_with_its_abilities(name):
    entry = get_model_entry(name)
    model = entry.build(2, 16)
    assert isinstance(model, entry.cls) and model.obs_dim == 2
    assert ("forecast" in entry.abilities) == hasattr(model, "forecast_model")
    assert ("impute" in entry.abilities) == hasattr(model, "impute")
    assert hasattr(model, "generate") and hasattr(model, "model") and hasattr(model, "guide")


def test_views_and_errors():
    assert model_names() == tuple(MODEL_REGISTRY)
    assert set(model_names("forecast")) | set(model_names("generate")) == set(model_names())
    assert model_names("impute") == ("conditional",)
    with pytest.raises(ValueError, match="unknown model 'dkff'.*dkf"):
        get_model_entry("dkff")
    with pytest.raises(ValueError, match="stage_length"):
        get_model_entry("stagediff").build(2, 16, stage_length=5)


def test_the_command_line_reads_the_registry_without_torch():
    code = "import sys, pyroseq.cli; print(pyroseq.cli.CONFIG_MODELS, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False") and "stagediff" in out
