"""pyroseq.runs: the machinery of the ``pyroseq`` command line (config files, run directories, and the
fit / forecast / backtest / generate / evaluate / impute steps), usable from Python as well."""

from .builder import build_model
from .commands import format_metrics, load_trained, run_evaluate, run_fit, run_forecast, run_generate
from .config import (
    FORECASTING_MODELS,
    GENERATIVE_MODELS,
    IMPUTING_MODELS,
    MODELS,
    SCHEMA,
    config_differences,
    example_config,
    load_config,
    validate_config,
)
from .dataset import RunData, load_run_data, unit_range
from .directory import RunDirectory
from .errors import UsageError
from .future import run_backtest, run_forecast_csv
from .impute import read_impute_csv, run_impute
from .table import SeriesTable, read_series_csv

__all__ = []
# Configuration files.
__all__ += ["FORECASTING_MODELS", "GENERATIVE_MODELS", "MODELS", "SCHEMA", "config_differences", "example_config",
            "load_config", "validate_config"]
# Data, models and run directories.
__all__ += ["RunData", "RunDirectory", "build_model", "load_run_data", "unit_range"]
# The command-line steps.
__all__ += ["format_metrics", "load_trained", "run_evaluate", "run_fit", "run_forecast", "run_generate"]
# Imputation (``pyroseq impute``).
__all__ += ["IMPUTING_MODELS", "read_impute_csv", "run_impute"]
# The user's own series: reading CSV files, forecasting their future, backtests; errors that are the user's to fix.
__all__ += ["SeriesTable", "UsageError", "read_series_csv", "run_backtest", "run_forecast_csv"]
