"""Plots of probabilistic forecasts and latent paths (matplotlib)."""

import numpy as np
import torch

__all__ = ["plot_forecast", "plot_latent_paths", "plot_predictive_histogram"]


def _axes(ax, figsize=(7, 3.5)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)[1]


def _as_numpy(t):
    return t.detach().cpu().double().numpy() if torch.is_tensor(t) else np.asarray(t, dtype=np.float64)


def plot_forecast(x_hist, samples, truth=None, series=0, channel=0, levels=(0.5, 0.9), ax=None, num_paths=0):
    """Fan chart of a probabilistic forecast of one series and channel: history, median, central
    prediction intervals and (optionally) the realised future and a few sample paths.

    :param torch.Tensor x_hist: history of shape ``(N, T, C)``.
    :param torch.Tensor samples: forecast samples of shape ``(S, N, H, C)``.
    :param torch.Tensor truth: optional realised future of shape ``(N, H, C)``.
    :param int series: which series to plot.
    :param int channel: which channel to plot.
    :param tuple levels: coverage of the shaded central intervals.
    :param matplotlib.axes.Axes ax: axes to draw on (default: a new figure).
    :param int num_paths: number of individual sample paths to draw.
    :returns: the axes.
    """
    if samples.dim() != 4 or x_hist.dim() != 3 or samples.shape[1] != x_hist.shape[0]:
        raise ValueError(f"samples must have shape (S, N, H, C) and x_hist (N, T, C), got "
                         f"{tuple(samples.shape)} and {tuple(x_hist.shape)}")
    ax = _axes(ax)
    hist = _as_numpy(x_hist[series, :, channel])
    fc = _as_numpy(samples[:, series, :, channel])
    T, H = hist.shape[0], fc.shape[1]
    t_hist, t_fut = np.arange(T), np.arange(T, T + H)
    ax.plot(t_hist, hist, color="black", lw=1.2, label="history")
    for level, alpha in zip(sorted(levels, reverse=True), np.linspace(0.2, 0.45, len(levels))):
        lo, hi = np.quantile(fc, [(1 - level) / 2, (1 + level) / 2], axis=0)
        ax.fill_between(t_fut, lo, hi, color="tab:blue", alpha=alpha, lw=0, label=f"{int(level * 100)}% interval")
    for path in fc[:num_paths]:
        ax.plot(t_fut, path, color="tab:blue", lw=0.5, alpha=0.6)
    ax.plot(t_fut, np.median(fc, 0), color="tab:blue", lw=1.5, label="median")
    if truth is not None:
        ax.plot(t_fut, _as_numpy(truth[series, :, channel]), color="tab:red", lw=1.2, ls="--", label="truth")
    ax.axvline(T - 0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("time step")
    ax.set_ylabel(f"x (channel {channel})")
    ax.legend(fontsize=8, loc="best")
    return ax


def plot_latent_paths(z, series=0, dims=None, num_paths=20, ax=None, truth=None):
    """Sample paths of the latent states of one series (e.g. posterior draws from the guide), one
    colour per latent dimension.

    :param z: latent samples of shape ``(S, N, T, d)`` (a tensor or array), or an
        :class:`arviz.InferenceData` whose posterior has ``z``.
    :param int series: which series to plot.
    :param dims: latent dimensions to plot (default: all).
    :param int num_paths: number of paths per dimension.
    :param matplotlib.axes.Axes ax: axes to draw on.
    :param truth: optional true latent path of shape ``(T,)`` or ``(T, d)`` (drawn dashed).
    :returns: the axes.
    """
    if hasattr(z, "posterior"):
        z = z.posterior["z"].values.reshape((-1,) + z.posterior["z"].shape[2:])
    z = _as_numpy(z)
    if z.ndim != 4:
        raise ValueError(f"z must have shape (S, N, T, d), got {z.shape}")
    ax = _axes(ax)
    dims = range(z.shape[-1]) if dims is None else dims
    t = np.arange(z.shape[2])
    for k, dim in enumerate(dims):
        color = f"C{k}"
        for i, path in enumerate(z[:num_paths, series, :, dim]):
            ax.plot(t, path, color=color, lw=0.6, alpha=0.4, label=f"z[{dim}]" if i == 0 else None)
    if truth is not None:
        truth = _as_numpy(truth).reshape(z.shape[2], -1)
        ax.plot(t, truth, color="black", lw=1.2, ls="--", label="true state")
    ax.set_xlabel("time step")
    ax.set_ylabel("latent state")
    ax.legend(fontsize=8, loc="best")
    return ax


def plot_predictive_histogram(samples, density=None, bins=200, range=(-10.0, 10.0), ax=None, label="model",
                              others=None):
    """Histogram of univariate predictive samples (e.g. the centred one-step forecast
    :math:`x_{T+1} - 0.9 x_T` pooled over series) against a known density.

    :param torch.Tensor samples: samples of any shape (flattened).
    :param density: optional distribution with ``log_prob`` (e.g.
        :func:`~pyroseq.data.bimodal_centred_density`), drawn as a curve.
    :param int bins: number of bins.
    :param tuple range: histogram range.
    :param matplotlib.axes.Axes ax: axes to draw on.
    :param str label: legend label of ``samples``.
    :param dict others: further ``label -> samples`` drawn as step histograms.
    :returns: the axes.
    """
    ax = _axes(ax)
    values = _as_numpy(samples).reshape(-1)
    ax.hist(values, bins=bins, range=range, density=True, alpha=0.5, color="tab:blue", label=label)
    for i, (name, other) in enumerate((others or {}).items()):
        ax.hist(_as_numpy(other).reshape(-1), bins=bins, range=range, density=True, histtype="step",
                color=f"C{i + 1}", lw=1.0, label=name)
    if density is not None:
        grid = torch.linspace(range[0], range[1], 1001, dtype=torch.float64)
        ax.plot(grid.numpy(), density.log_prob(grid).exp().numpy(), color="black", lw=1.2, label="true density")
    ax.set_xlabel("value")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="best")
    return ax
