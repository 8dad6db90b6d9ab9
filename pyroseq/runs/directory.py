"""The layout of a run directory: every file a command writes or reads, in one place."""

import json
import os

from .errors import UsageError

__all__ = ["RunDirectory"]


class RunDirectory:
    """The files of a command-line run::

        config.json      the validated configuration (written by ``pyroseq fit``)
        data.json        data summary: channels, window length, split sizes, scaling
        checkpoint.pt    training checkpoint (model, optimiser, RNG states; resumable)
        losses.json      loss per step;  loss.png: its plot
        forecast.npz     forecast samples (S, N, H, C), histories and realised futures;  forecast.png
        generated.npz    generated windows (n, L, C) in data units;  generated.png
        metrics.json     scores written by ``pyroseq evaluate``
        imputed.csv      median imputation written by ``pyroseq impute`` (default output)
        forecast.csv     median forecast past the end of a CSV file, by ``pyroseq forecast`` (default output)
        backtest.json    scores per horizon step by ``pyroseq backtest``;  backtest.txt, backtest.png

    :param str path: the directory.
    """

    FILES = dict(config="config.json", data="data.json", checkpoint="checkpoint.pt", losses="losses.json",
                 loss_plot="loss.png", forecast="forecast.npz", forecast_plot="forecast.png",
                 generated="generated.npz", generated_plot="generated.png", metrics="metrics.json",
                 imputed="imputed.csv", forecast_csv="forecast.csv", backtest="backtest.json",
                 backtest_table="backtest.txt", backtest_plot="backtest.png")

    def __init__(self, path):
        self.path = os.fspath(path)

    def __getattr__(self, key):
        if key in self.FILES:
            return os.path.join(self.path, self.FILES[key])
        raise AttributeError(key)

    def __repr__(self):
        return f"RunDirectory({self.path!r})"

    def exists(self, key):
        """True if the file ``key`` (a key of :attr:`FILES`) exists."""
        return os.path.exists(getattr(self, key))

    def require(self, key, hint):
        """The path of the file ``key``.

        :raises FileNotFoundError: if the directory or the file does not exist, with ``hint``.
        """
        if not os.path.isdir(self.path):
            raise FileNotFoundError(f"run directory {self.path} does not exist ({hint})")
        path = getattr(self, key)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} does not exist ({hint})")
        return path

    def read_json(self, key, hint="run `pyroseq fit` first"):
        """Parse the JSON file ``key``."""
        path = self.require(key, hint)
        with open(path) as f:
            try:
                return json.load(f)
            except json.JSONDecodeError as e:
                raise UsageError(f"{path} is not valid JSON: {e}") from None

    def write_json(self, key, obj):
        """Write ``obj`` as the JSON file ``key`` (atomically, via a temporary file)."""
        os.makedirs(self.path, exist_ok=True)
        path = getattr(self, key)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
        return path
