"""The Mamba block, with the parameters of ``mamba_ssm.Mamba`` and a CPU selective scan.

Parameter names, shapes and initialisation follow ``mamba_ssm.modules.mamba_simple.Mamba``
so that state dicts load both ways:

=====================  ==============================================
``in_proj.weight``     ``(2 * d_inner, d_model)`` (+ ``in_proj.bias`` if ``bias``)
``conv1d.weight``      ``(d_inner, 1, d_conv)``, depthwise, causal
``conv1d.bias``        ``(d_inner,)`` if ``conv_bias``
``x_proj.weight``      ``(dt_rank + 2 * d_state, d_inner)``
``dt_proj.weight``     ``(d_inner, dt_rank)``
``dt_proj.bias``       ``(d_inner,)``: inverse softplus of log-uniform steps in
                       ``[dt_min, dt_max]``, flagged ``_no_reinit``
``A_log``              ``(d_inner, d_state)``: ``log(1..d_state)`` per channel (S4D-real)
``D``                  ``(d_inner,)``: ones
``out_proj.weight``    ``(d_model, d_inner)`` (+ ``out_proj.bias`` if ``bias``)
=====================  ==============================================

with ``d_inner = expand * d_model`` and ``dt_rank = ceil(d_model / 16)`` when ``"auto"``.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .selective_scan import selective_scan

__all__ = ["Mamba"]


def _upcast(p):
    # the scan's parameters in at least single precision (float64 ones stay float64)
    return p if p.dtype == torch.float64 else p.float()


class Mamba(nn.Module):
    """Mamba block (selective state-space mixer), input and output ``(batch, length, d_model)``.

    ``x, z = in_proj(h)``; ``x = silu(causal depthwise conv(x))``;
    ``dt, B, C = x_proj(x)``; ``y = selective_scan(x, dt_proj.weight dt, -exp(A_log), B, C, D,
    z, delta_bias=dt_proj.bias, delta_softplus=True)``; ``out = out_proj(y)``.

    On CUDA tensors the scan is mamba_ssm's kernel when ``mamba_ssm`` imports; on CPU it is
    :func:`~pyroseq.nn.selective_scan` (numba kernels if installed, else torch).

    :param int d_model: model width.
    :param int d_state: state size per channel ``n``.
    :param int d_conv: width of the causal depthwise convolution.
    :param int expand: ``d_inner = expand * d_model``.
    :param dt_rank: rank of the step-size projection, or ``"auto"`` for ``ceil(d_model / 16)``.
    :param float dt_min: smallest initial step size.
    :param float dt_max: largest initial step size.
    :param str dt_init: ``"random"`` (uniform) or ``"constant"`` initialisation of
        ``dt_proj.weight`` at scale ``dt_scale / sqrt(dt_rank)``.
    :param float dt_scale: scale of that initialisation.
    :param float dt_init_floor: lower clamp of the initial step sizes.
    :param bool conv_bias: bias in the convolution.
    :param bool bias: biases in ``in_proj`` and ``out_proj``.
    :param bool use_fast_path: accepted for compatibility with mamba_ssm; unused.
    :param int layer_idx: accepted for compatibility with mamba_ssm; stored.
    :param device: parameter device.
    :param dtype: parameter dtype.
    :param str backend: scan backend passed to :func:`~pyroseq.nn.selective_scan`.
    """

    def __init__(self, d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto", dt_min=0.001,
                 dt_max=0.1, dt_init="random", dt_scale=1.0, dt_init_floor=1e-4,
                 conv_bias=True, bias=False, use_fast_path=True, layer_idx=None, device=None,
                 dtype=None, backend="auto"):
        for name, value in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv),
                            ("expand", expand)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if dt_rank != "auto" and (isinstance(dt_rank, bool) or not isinstance(dt_rank, int)
                                  or dt_rank < 1):
            raise ValueError(f"dt_rank must be 'auto' or a positive int, got {dt_rank!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"dt_min and dt_max must satisfy 0 < dt_min <= dt_max, "
                             f"got {dt_min!r}, {dt_max!r}")
        if dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        factory = {"device": device, "dtype": dtype}
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.use_fast_path = use_fast_path
        self.layer_idx = layer_idx
        self.backend = backend

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, padding=d_conv - 1,
                                groups=self.d_inner, bias=conv_bias, **factory)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        std = dt_scale / math.sqrt(self.dt_rank)  # keeps the variance of dt_proj's output
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        # step sizes log-uniform in [dt_min, dt_max]; the bias is their inverse softplus
        log_dt = torch.rand(self.d_inner, **factory) * (math.log(dt_max) - math.log(dt_min))
        dt = torch.exp(log_dt + math.log(dt_min)).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True  # model-wide initialisers must leave it alone
        # S4D-real: A = -(1, 2, ..., d_state) for every channel
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device)
        self.A_log = nn.Parameter(torch.log(A).repeat(self.d_inner, 1))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def _check_input(self, hidden_states):
        if not torch.is_tensor(hidden_states) or hidden_states.dim() != 3:
            raise ValueError("hidden_states must be a tensor of shape (batch, length, d_model), "
                             f"got {getattr(hidden_states, 'shape', type(hidden_states))}")
        if hidden_states.shape[-1] != self.d_model or hidden_states.shape[1] < 1:
            raise ValueError(f"hidden_states must have shape (batch, length >= 1, "
                             f"{self.d_model}), got {tuple(hidden_states.shape)}")

    def forward(self, hidden_states, state_fusion=None):
        """Mix a sequence.

        :param torch.Tensor hidden_states: shape ``(batch, length, d_model)``.
        :param callable state_fusion: optional map of the scan's hidden states
            ``(batch, d_inner, length, d_state)`` to the same shape, applied before the
            read-out (Lag Fusion); see :func:`~pyroseq.nn.selective_scan`.
        :returns: shape ``(batch, length, d_model)``.
        """
        self._check_input(hidden_states)
        length = hidden_states.shape[1]
        xz = self.in_proj(hidden_states).transpose(1, 2)  # (batch, 2 d_inner, length)
        x, z = xz.chunk(2, dim=1)
        x = F.silu(self.conv1d(x)[..., :length])
        dt, B, C = self.x_proj(x.transpose(1, 2)).split(
            [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # bias goes to the scan
        A = -torch.exp(_upcast(self.A_log))
        y = selective_scan(x, delta, A, B.transpose(1, 2), C.transpose(1, 2), _upcast(self.D), z,
                           delta_bias=_upcast(self.dt_proj.bias), delta_softplus=True,
                           state_fusion=state_fusion, backend=self.backend)
        return self.out_proj(y.transpose(1, 2))

    def allocate_inference_cache(self, batch_size, max_seqlen=None, dtype=None, **kwargs):
        """Zero states for :meth:`step`.

        :param int batch_size: batch size.
        :param max_seqlen: unused (kept for mamba_ssm's signature).
        :param dtype: state dtype (default: the parameters').
        :returns: ``(conv_state, ssm_state)`` of shapes ``(batch_size, d_inner, d_conv)`` and
            ``(batch_size, d_inner, d_state)``.
        """
        device = self.out_proj.weight.device
        conv_state = torch.zeros(batch_size, self.d_inner, self.d_conv, device=device,
                                 dtype=self.conv1d.weight.dtype if dtype is None else dtype)
        ssm_state = torch.zeros(batch_size, self.d_inner, self.d_state, device=device,
                                dtype=self.dt_proj.weight.dtype if dtype is None else dtype)
        return conv_state, ssm_state

    def step(self, hidden_states, conv_state, ssm_state):
        """One recurrent step, updating the states in place.

        :param torch.Tensor hidden_states: shape ``(batch, 1, d_model)``.
        :param torch.Tensor conv_state: last ``d_conv`` convolution inputs,
            ``(batch, d_inner, d_conv)``.
        :param torch.Tensor ssm_state: scan state, ``(batch, d_inner, d_state)``.
        :returns: ``(out, conv_state, ssm_state)`` with ``out`` of shape ``(batch, 1, d_model)``.
        """
        if not torch.is_tensor(hidden_states) or hidden_states.dim() != 3 or \
                hidden_states.shape[1] != 1 or hidden_states.shape[2] != self.d_model:
            raise ValueError(f"hidden_states must have shape (batch, 1, {self.d_model}), got "
                             f"{tuple(getattr(hidden_states, 'shape', ()))}")
        batch = hidden_states.shape[0]
        for name, state, shape in (("conv_state", conv_state, (batch, self.d_inner, self.d_conv)),
                                   ("ssm_state", ssm_state, (batch, self.d_inner, self.d_state))):
            if not torch.is_tensor(state) or tuple(state.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, "
                                 f"got {tuple(getattr(state, 'shape', ()))}")
        dtype = hidden_states.dtype
        x, z = self.in_proj(hidden_states[:, 0]).chunk(2, dim=-1)  # (batch, d_inner)
        conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
        conv_state[:, :, -1] = x
        x = (conv_state * self.conv1d.weight[:, 0]).sum(-1)
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = F.silu(x).to(dtype)
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(F.linear(dt, self.dt_proj.weight) + self.dt_proj.bias.to(dt.dtype))
        A = -torch.exp(_upcast(self.A_log))
        dA = torch.exp(dt.unsqueeze(-1) * A)  # (batch, d_inner, d_state)
        ssm_state.copy_(ssm_state * dA + (dt * x).unsqueeze(-1) * B.unsqueeze(1))
        y = (ssm_state.to(dtype) * C.unsqueeze(1)).sum(-1) + self.D.to(dtype) * x
        y = y * F.silu(z)
        return self.out_proj(y).unsqueeze(1), conv_state, ssm_state
