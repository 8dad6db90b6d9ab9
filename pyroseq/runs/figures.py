"""The PNG figures a command-line run writes: loss curve, forecast fan charts, real vs generated windows."""

import numpy as np
import torch

__all__ = ["save_fan_plot", "save_figure", "save_forecast_plot", "save_generated_plot", "save_loss_plot"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window from the command line
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    """Lay out ``fig``, write it to the PNG file ``path`` and close it; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def save_loss_plot(losses, path, title="training loss"):
    """Plot a loss history (per step, with a moving average) to ``path``.

    :param list losses: loss per step.
    :param str path: PNG file.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    y = np.asarray(losses, dtype=np.float64)
    ax.plot(np.arange(1, len(y) + 1), y, color="tab:blue", alpha=0.35, lw=0.8, label="per step")
    window = max(1, len(y) // 50)
    if len(y) >= 2 * window > 2:
        smooth = np.convolve(y, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window, len(y) + 1), smooth, color="tab:blue", lw=1.6, label=f"mean of {window}")
    # Early losses are often orders of magnitude larger than the rest; scale the view to the last 90%.
    if len(y) > 10:
        lo, hi = np.percentile(y[len(y) // 10:], [0.5, 99.5])
        ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
    ax.set_xlabel("step")
    ax.set_ylabel("loss per sequence")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def save_forecast_plot(history, samples, truth, path, num_series=3, channel=0):
    """Fan charts of the first ``num_series`` forecasts (:func:`~pyroseq.inference.plot_forecast`).

    :param torch.Tensor history: ``(N, T, C)``.
    :param torch.Tensor samples: ``(S, N, H, C)``.
    :param torch.Tensor truth: ``(N, H, C)`` or None.
    :param str path: PNG file.
    """
    from ..inference import plot_forecast

    plt = _pyplot()
    n = min(num_series, history.shape[0])
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.6 * n), squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        plot_forecast(history, samples, truth=truth, series=i, channel=channel, ax=ax, num_paths=3)
        ax.set_title(f"held-out series {i}, channel {channel}", fontsize=9)
        if i:
            ax.get_legend().remove()
    return save_figure(fig, path)


def save_generated_plot(real, fake, path, num_windows=8, columns=None):
    """Real and generated windows side by side, one row per channel (at most four).

    :param torch.Tensor real: real windows ``(N, L, C)``.
    :param torch.Tensor fake: generated windows ``(n, L', C)``.
    :param str path: PNG file.
    """
    plt = _pyplot()
    C = min(4, fake.shape[-1])
    fig, axes = plt.subplots(C, 2, figsize=(10, 2.2 * C), squeeze=False, sharey="row")
    for c in range(C):
        for col, (label, x) in enumerate((("real", real), ("generated", fake))):
            ax = axes[c, col]
            ax.plot(np.asarray(x[:num_windows, :, c], dtype=np.float64).T, lw=0.9, alpha=0.8)
            name = columns[c] if columns is not None and c < len(columns) else f"channel {c}"
            ax.set_title(f"{label}: {name}", fontsize=9)
    return save_figure(fig, path)


def save_fan_plot(history, samples, path, name):
    """Fan chart of the first channel of a forecast past the end of a series.

    :param numpy.ndarray history: the rows forecast from, ``(T, C)``.
    :param numpy.ndarray samples: forecast samples ``(S, H, C)``.
    :param str path: PNG file.
    :param str name: the name of the first channel (for the title).
    """
    from ..inference import plot_forecast

    fig, ax = _pyplot().subplots(figsize=(8, 3))
    plot_forecast(torch.as_tensor(history)[None], torch.as_tensor(samples)[:, None], ax=ax, num_paths=3)
    ax.set_title(f"forecast of {name!r} (median, 50% and 90% intervals)", fontsize=9)
    return save_figure(fig, path)
