"""Moving-average trend / residual decomposition of sequences (Autoformer-style series decomposition).

The trend of a sequence is its moving average along the time axis, computed with *replicate* padding so
that it has the input's length; the residual is what is left. ``trend + residual`` reconstructs the input
(exactly up to floating-point rounding), so a stack of decompositions loses no information.
"""

from torch import nn
from torch.nn import functional as F

__all__ = ["MovingAverage", "SeriesDecomposition", "ProgressiveDecomposition"]


def _check_kernel_size(kernel_size):
    if isinstance(kernel_size, bool) or int(kernel_size) != kernel_size or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive integer, got {kernel_size!r}")
    return int(kernel_size)


class MovingAverage(nn.Module):
    r"""Centered moving average along the time axis with replicate padding:

    .. math:: \mathrm{trend}_t = \frac1k \sum_{j=-\lfloor (k-1)/2 \rfloor}^{\lceil (k-1)/2 \rceil}
        x_{\min(\max(t + j, 0), T - 1)}.

    The output has the input's shape; ``kernel_size=1`` is the identity.

    :param int kernel_size: window length ``k >= 1`` (odd sizes give a centered window).
    :param int time_dim: the time axis of the input (default ``-2``: inputs ``(..., T, D)``).
    """

    def __init__(self, kernel_size, time_dim=-2):
        super().__init__()
        self.kernel_size = _check_kernel_size(kernel_size)
        self.time_dim = int(time_dim)

    def forward(self, x):
        """
        :param torch.Tensor x: input with time along ``time_dim``, e.g. ``(B, T, D)``.
        :returns: the moving average, of ``x``'s shape.
        """
        if x.dim() < 1:
            raise ValueError("x must have at least one dimension (time)")
        k = self.kernel_size
        if k == 1:
            return x
        moved = x.movedim(self.time_dim, -1)  # (..., T)
        shape = moved.shape
        flat = moved.reshape(-1, 1, shape[-1])
        left = (k - 1) // 2
        padded = F.pad(flat, (left, k - 1 - left), mode="replicate")
        # Replicate padding (not zeros) keeps the trend unbiased at both ends of the window.
        trend = F.avg_pool1d(padded, kernel_size=k, stride=1)
        return trend.reshape(shape).movedim(-1, self.time_dim)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, time_dim={self.time_dim}"


class SeriesDecomposition(nn.Module):
    """Split a sequence into a moving-average trend and the residual ``x - trend``.

    :param int kernel_size: moving-average window length.
    :param int time_dim: the time axis of the input (default ``-2``).
    """

    def __init__(self, kernel_size, time_dim=-2):
        super().__init__()
        self.moving_average = MovingAverage(kernel_size, time_dim)

    def forward(self, x):
        """
        :param torch.Tensor x: input with time along ``time_dim``.
        :returns: ``(trend, residual)``, each of ``x``'s shape, with ``trend + residual == x``.
        """
        trend = self.moving_average(x)
        return trend, x - trend


class ProgressiveDecomposition(nn.Module):
    """Progressive multi-scale decomposition: scale ``s`` extracts the moving-average trend (window
    ``kernel_sizes[s]``) of what scale ``s - 1`` left over and hands the residual on, so that
    ``sum(trends) + residual == x``. Use decreasing window lengths (coarse to fine); a final window of 1
    puts the whole remainder into the last trend.

    :param tuple kernel_sizes: window lengths, one per scale.
    :param int time_dim: the time axis of the input (default ``-2``).
    """

    def __init__(self, kernel_sizes, time_dim=-2):
        super().__init__()
        kernel_sizes = tuple(kernel_sizes)
        if not kernel_sizes:
            raise ValueError("kernel_sizes must contain at least one window length")
        self.kernel_sizes = tuple(_check_kernel_size(k) for k in kernel_sizes)
        self.layers = nn.ModuleList(SeriesDecomposition(k, time_dim) for k in self.kernel_sizes)

    def forward(self, x):
        """
        :param torch.Tensor x: input with time along ``time_dim``.
        :returns: ``(trends, residual)``: a list of ``len(kernel_sizes)`` tensors and the final residual,
            each of ``x``'s shape.
        """
        trends = []
        residual = x
        for layer in self.layers:
            trend, residual = layer(residual)
            trends.append(trend)
        return trends, residual
