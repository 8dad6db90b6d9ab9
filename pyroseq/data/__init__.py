"""pyroseq.data."""

from .csv import data_search_paths, find_data_file, load_csv, load_etth, load_stocks
from .registry import WindowedDataset, get_dataset, list_datasets, register_dataset, windowed_series
from .scaling import MinMaxScaler
from .sines import sines
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
    "register_dataset",
    "sines",
    "sliding_windows",
    "WindowedDataset",
    "windowed_series",
]
