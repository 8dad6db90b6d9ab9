import matplotlib
import pytest
import torch

from pyroseq.data import bimodal_centred_density
from pyroseq.inference import plot_forecast, plot_latent_paths, plot_predictive_histogram

matplotlib.use("Agg")


def test_plot_forecast(tmp_path):
    import matplotlib.pyplot as plt

    ax = plot_forecast(torch.randn(2, 10, 1), torch.randn(30, 2, 5, 1), truth=torch.randn(2, 5, 1), series=1,
                       num_paths=3)
    # history + median + truth + 3 paths
    assert len(ax.lines) >= 6 and len(ax.collections) == 2
    ax.figure.savefig(tmp_path / "fan.png")
    assert (tmp_path / "fan.png").stat().st_size > 0
    plt.close("all")
    with pytest.raises(ValueError, match="shape"):
        plot_forecast(torch.randn(2, 10, 1), torch.randn(30, 3, 5, 1))


def test_plot_latent_paths_and_histogram():
    import matplotlib.pyplot as plt

    ax = plot_latent_paths(torch.randn(8, 2, 6, 2), num_paths=5, truth=torch.randn(6))
    assert len(ax.lines) == 2 * 5 + 1
    ax = plot_predictive_histogram(torch.randn(1000) * 4, bimodal_centred_density(), bins=50,
                                   others={"oracle": torch.randn(1000)})
    assert len(ax.patches) > 0 and len(ax.lines) == 1
    plt.close("all")
    with pytest.raises(ValueError, match="shape"):
        plot_latent_paths(torch.randn(2, 3))
