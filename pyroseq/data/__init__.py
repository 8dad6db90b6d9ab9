"""pyroseq.data."""

from .csv import PACKAGED_DATA_DIR, data_search_paths, find_data_file, load_csv, load_etth, load_stocks
from .registry import WindowedDataset, get_dataset, list_datasets, register_dataset, windowed_series
from .scaling import MinMaxScaler
from .sines import sines
from .ssm import (
    bimodal,
    bimodal_centred_density,
    bimodal_log_likelihood,
    bimodal_oracle_forecast,
    lgssm,
    lgssm_transition_matrix,
    nonlinear_ssm,
)
from .windows import num_windows, sliding_windows

__all__ = []
# Benchmark data: generators, CSV loaders, scaling, windowing and the dataset registry.
__all__ += [
    "data_search_paths",
    "find_data_file",
    "get_dataset",
    "list_datasets",
    "load_csv",
    "load_etth",
    "load_stocks",
    "MinMaxScaler",
    "num_windows",
    "PACKAGED_DATA_DIR",
    "register_dataset",
    "sines",
    "sliding_windows",
    "WindowedDataset",
    "windowed_series",
]
# State-space generators: the DDSSM bimodal process (with its true one-step density, oracle and likelihood),
# a linear-Gaussian SSM and a nonlinear SSM.
__all__ += ["bimodal", "bimodal_centred_density", "bimodal_log_likelihood", "bimodal_oracle_forecast", "lgssm",
            "lgssm_transition_matrix", "nonlinear_ssm"]
# Registry entries of the synthetic state-space data ("bimodal"); imported for its registration side effect.
from . import ssm_datasets  # noqa: E402, F401

# Data larger than memory: windows over memory-mapped arrays, read per minibatch.
from .memmap import MemmapWindows, WindowIndexError, create_npy  # noqa: E402

__all__ += ["MemmapWindows", "WindowIndexError", "create_npy"]
