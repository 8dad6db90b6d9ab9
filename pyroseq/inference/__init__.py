"""pyroseq.inference: SVI training, posterior predictive forecasting, ArviZ export, likelihood bounds."""

from .arviz import to_inference_data
from .backtesting import BacktestResult, backtest
from .checkpoint import load_checkpoint, save_checkpoint
from .fit import fit
from .forecast import forecast
from .iwae import iwae_bound
from .plots import plot_forecast, plot_latent_paths, plot_predictive_histogram
from .schedules import SiteScaleMessenger, kl_weight, scale_sites

__all__ = [
    "BacktestResult",
    "SiteScaleMessenger",
    "backtest",
    "fit",
    "forecast",
    "iwae_bound",
    "kl_weight",
    "load_checkpoint",
    "plot_forecast",
    "plot_latent_paths",
    "plot_predictive_histogram",
    "save_checkpoint",
    "scale_sites",
    "to_inference_data",
]

# Reliability and scale-out: corrupt-checkpoint and non-finite errors, data-parallel helpers.
from .checkpoint import CheckpointError  # noqa: E402
from .distributed import DistributedContext, setup_distributed  # noqa: E402
from .fit import NonFiniteError  # noqa: E402

__all__ += ["CheckpointError", "DistributedContext", "NonFiniteError", "setup_distributed"]

# The model protocol of fit, written once.
from .protocol import TrainableModel, TrainingHooks  # noqa: E402

__all__ += ["TrainableModel", "TrainingHooks"]
