"""A small TS2Vec encoder, the feature extractor behind context-FID.

TS2Vec (Yue et al., "TS2Vec: Towards Universal Representation of Time Series", AAAI 2022) learns
per-time-step representations with a dilated convolutional encoder and a *hierarchical contrastive
loss*: two overlapping random crops of a window are encoded (with random timestamp masking), and
the representations of the shared time steps are contrasted against other windows (instance loss)
and other time steps of the same window (temporal loss) at every time scale obtained by repeated
max-pooling over time. A window's representation is the max over time of its per-step features.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

__all__ = [
    "TS2VecEncoder",
    "instance_contrastive_loss",
    "temporal_contrastive_loss",
    "hierarchical_contrastive_loss",
    "random_overlapping_crops",
    "train_ts2vec",
    "encode_windows",
]


class _DilatedResidualBlock(nn.Module):
    # GELU -> dilated conv -> GELU -> dilated conv, plus a (1x1-projected) skip connection.
    def __init__(self, in_channels, out_channels, dilation, kernel_size):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2  # odd receptive field: output length = input
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding,
                               dilation=dilation)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=padding,
                               dilation=dilation)
        self.skip = None if in_channels == out_channels else nn.Conv1d(in_channels, out_channels, 1)

    def forward(self, x):
        residual = x if self.skip is None else self.skip(x)
        return _conv(self.conv2, F.gelu(_conv(self.conv1, F.gelu(x)))) + residual


def _conv(conv, x):
    # With dilation >= length every tap but the centre one reads only zero padding, so the dilated
    # convolution equals a 1x1 convolution with the centre weights (exactly, and much cheaper).
    if conv.dilation[0] >= x.size(-1):
        centre = conv.kernel_size[0] // 2
        return F.conv1d(x, conv.weight[:, :, centre:centre + 1], conv.bias)
    return conv(x)


class TS2VecEncoder(nn.Module):
    """
    TS2Vec encoder: a linear input projection, random timestamp masking (training only), ``depth``
    dilated residual convolution blocks of width ``hidden_dim`` (dilations ``1, 2, ..., 2**(depth-1)``)
    followed by one more residual block (dilation ``2**depth``) that maps to ``output_dim``, and
    dropout on the output representation (training only). With the defaults this is the layout of
    the reference TS2Vec encoder used for context-FID (64 hidden, 10 + 1 blocks, 320 outputs).

    :param int input_dim: Number of input channels ``C``.
    :param int hidden_dim: Width of the hidden blocks.
    :param int output_dim: Dimension of the representation.
    :param int depth: Number of hidden residual blocks.
    :param int kernel_size: Odd convolution kernel size.
    :param float mask_prob: Probability that a time step is masked (zeroed after the input
        projection) in training mode.
    :param float dropout: Dropout rate on the output representation in training mode.
    """

    def __init__(self, input_dim, hidden_dim=64, output_dim=320, depth=10, kernel_size=3,
                 mask_prob=0.5, dropout=0.1):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd, got {}".format(kernel_size))
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.mask_prob = mask_prob
        self.input_proj = nn.Linear(input_dim, hidden_dim)
        widths = [hidden_dim] * (depth + 1) + [output_dim]
        self.blocks = nn.Sequential(*[
            _DilatedResidualBlock(widths[i], widths[i + 1], 2 ** i, kernel_size)
            for i in range(depth + 1)
        ])
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        """
        :param torch.Tensor x: Windows of shape ``(B, T, input_dim)``.
        :returns: Per-time-step representations of shape ``(B, T, output_dim)``.
        :rtype: torch.Tensor
        """
        h = self.input_proj(x)
        if self.training and self.mask_prob > 0:
            keep = torch.rand(h.shape[:2], device=h.device) >= self.mask_prob
            h = h * keep.unsqueeze(-1).to(h.dtype)
        h = self.blocks(h.transpose(1, 2)).transpose(1, 2)
        return self.dropout(h)


def _contrast(z, num_pairs):
    # z: (G, 2P, D) where rows i and i + P are positives; all other rows of the group are negatives.
    sim = z @ z.transpose(1, 2)
    eye = torch.eye(sim.size(-1), dtype=torch.bool, device=sim.device)
    sim = sim.masked_fill(eye, float("-inf"))
    target = (torch.arange(2 * num_pairs, device=z.device) + num_pairs) % (2 * num_pairs)
    return F.cross_entropy(sim.reshape(-1, sim.size(-1)), target.repeat(z.size(0)))


def instance_contrastive_loss(z1, z2):
    """
    Instance-wise contrastive loss: at every time step, the two views of a window are positives and
    the other windows of the batch (both views) are negatives.

    :param torch.Tensor z1: Representations of the first view, shape ``(B, T, D)``.
    :param torch.Tensor z2: Representations of the second view, shape ``(B, T, D)``.
    :returns: A scalar; zero when ``B == 1`` (no negatives).
    :rtype: torch.Tensor
    """
    batch = z1.size(0)
    if batch == 1:
        return z1.new_zeros(())
    return _contrast(torch.cat([z1, z2], dim=0).transpose(0, 1), batch)


def temporal_contrastive_loss(z1, z2):
    """
    Temporal contrastive loss: within a window, the two views of a time step are positives and the
    other time steps (both views) are negatives.

    :param torch.Tensor z1: Representations of the first view, shape ``(B, T, D)``.
    :param torch.Tensor z2: Representations of the second view, shape ``(B, T, D)``.
    :returns: A scalar; zero when ``T == 1`` (no negatives).
    :rtype: torch.Tensor
    """
    steps = z1.size(1)
    if steps == 1:
        return z1.new_zeros(())
    return _contrast(torch.cat([z1, z2], dim=1), steps)


def hierarchical_contrastive_loss(z1, z2, alpha=0.5, temporal_unit=0):
    """
    Hierarchical contrastive loss of TS2Vec: the average over time scales of
    ``alpha * instance + (1 - alpha) * temporal`` losses, where each coarser scale max-pools the
    previous one over pairs of time steps until one step remains (at which only the instance loss
    applies). Temporal terms are skipped at the ``temporal_unit`` finest scales.

    :param torch.Tensor z1: Representations of the first view, shape ``(B, T, D)``.
    :param torch.Tensor z2: Representations of the second view, shape ``(B, T, D)``.
    :param float alpha: Weight of the instance loss.
    :param int temporal_unit: Number of finest scales without a temporal loss.
    :rtype: torch.Tensor
    """
    loss = z1.new_zeros(())
    level = 0
    while z1.size(1) > 1:
        loss = loss + alpha * instance_contrastive_loss(z1, z2)
        if level >= temporal_unit:
            loss = loss + (1 - alpha) * temporal_contrastive_loss(z1, z2)
        level += 1
        z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2).transpose(1, 2)
        z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2).transpose(1, 2)
    loss = loss + alpha * instance_contrastive_loss(z1, z2)
    return loss / (level + 1)


def random_overlapping_crops(x, min_overlap=2):
    """
    Draw two random crops of every window that share an overlapping segment of common length.

    One overlap ``[a, b)`` and outer ends ``a1 <= a`` and ``b2 >= b`` are drawn for the batch; view 1
    covers ``[a1, b)`` and view 2 covers ``[a, b2)``, and each window is shifted by its own random
    offset that keeps both views inside the window. Uses torch's global generator.

    :param torch.Tensor x: Windows of shape ``(B, T, C)`` with ``T >= min_overlap``.
    :param int min_overlap: Minimum length of the overlap.
    :returns: ``(view1, view2, overlap)`` with views of shape ``(B, b - a1, C)`` and
        ``(B, b2 - a, C)``; the overlap is the last ``overlap`` steps of view 1 and the first
        ``overlap`` steps of view 2.
    :rtype: tuple
    """
    batch, steps = x.shape[:2]

    def randint(low, high, size=()):
        return torch.randint(low, high, size) if size else int(torch.randint(low, high, ()))

    overlap = randint(min_overlap, steps + 1)
    a = randint(0, steps - overlap + 1)
    b = a + overlap
    a1 = randint(0, a + 1)
    b2 = randint(b, steps + 1)
    shift = randint(-a1, steps - b2 + 1, (batch,))
    rows = torch.arange(batch).unsqueeze(-1)
    view1 = x[rows, (shift + a1).unsqueeze(-1) + torch.arange(b - a1)]
    view2 = x[rows, (shift + a).unsqueeze(-1) + torch.arange(b2 - a)]
    return view1, view2, overlap


def train_ts2vec(windows, iterations=600, batch_size=8, lr=1e-3, average=True, **encoder_kwargs):
    """
    Train a :class:`TS2VecEncoder` on windows with the hierarchical contrastive loss (AdamW).
    Batches are drawn epoch-wise without replacement. Uses torch's global generator; wrap the call
    in :func:`pyroseq.metrics.score.seeded` for reproducibility.

    :param torch.Tensor windows: Training windows of shape ``(N, T, C)`` with ``T >= 2``.
    :param int iterations: Number of optimisation steps.
    :param int batch_size: Windows per step.
    :param float lr: Learning rate.
    :param bool average: Return the running (equal-weight) average of the weights over all steps,
        as the reference TS2Vec does, instead of the last iterate.
    :param encoder_kwargs: Passed to :class:`TS2VecEncoder`.
    :returns: The trained encoder in eval mode.
    :rtype: torch.nn.Module
    """
    windows = torch.as_tensor(windows, dtype=torch.float32)
    num, steps, channels = windows.shape
    if steps < 2:
        raise ValueError("windows must have length >= 2 for TS2Vec cropping, got {}".format(steps))
    encoder = TS2VecEncoder(channels, **encoder_kwargs)
    averaged = AveragedModel(encoder) if average else None
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=lr)
    encoder.train()
    order = torch.randperm(num)
    cursor = 0
    for _ in range(iterations):
        if cursor + batch_size > num:  # new epoch (drops the last incomplete batch)
            order, cursor = torch.randperm(num), 0
        batch = windows[order[cursor:cursor + batch_size]]
        cursor += batch_size
        view1, view2, overlap = random_overlapping_crops(batch)
        z1 = encoder(view1)[:, -overlap:]
        z2 = encoder(view2)[:, :overlap]
        loss = hierarchical_contrastive_loss(z1, z2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if averaged is not None:
            averaged.update_parameters(encoder)
    result = averaged.module if averaged is not None else encoder
    return result.eval()


@torch.no_grad()
def encode_windows(encoder, windows, chunk_size=None):
    """
    Window-level representations: the encoder's per-step features max-pooled over time.

    :param torch.nn.Module encoder: A trained :class:`TS2VecEncoder`.
    :param windows: Windows of shape ``(N, T, C)``.
    :type windows: numpy.ndarray or torch.Tensor
    :param int chunk_size: Windows encoded at once; by default about ``2**22`` output values
        (16 MB) per chunk, so memory stays bounded for long windows.
    :returns: Array of shape ``(N, output_dim)``.
    :rtype: numpy.ndarray
    """
    was_training = encoder.training
    encoder.eval()
    windows = torch.as_tensor(windows, dtype=torch.float32)
    if chunk_size is None:
        chunk_size = max(1, 2 ** 22 // (max(1, windows.shape[1]) * encoder.output_dim))
    out = [encoder(chunk).amax(dim=1) for chunk in windows.split(chunk_size)]
    encoder.train(was_training)
    return torch.cat(out).double().numpy() if out else np.zeros((0, encoder.output_dim))
