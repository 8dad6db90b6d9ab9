r"""One core of the window diffusion models (DiM-TS, Stage-Diff, the conditional models and the emission of the
latent-diffusion state-space model). Conditioning is made of named parts, each with the windows' batch dims in front:
``"planes"`` ``batch + (T, C, K)`` (covariates repeated over the channels, a latent path); ``"observed"``, ``"mask"``
and ``"target"`` ``batch + (T, C)`` (observed values, read by the denoiser as two more planes, see
:class:`~pyroseq.diffusion.MaskedDenoiser`, and the entries scored); ``"history"``, the tokens of a stage.
"""

import contextlib
import copy
import dataclasses

import pyro
import torch

from ..checks import nonnegative_int, positive_int
from ..diffusion import SAMPLERS, EDMPrecond, sampler_steps
from ..diffusion.noise import standard_normal
from ..diffusion.validation import check_edm_noise, check_noise_range
from ..distributions import ConditionalDiffusionLikelihood, DiffusionLikelihood
from ..distributions.context import map_context
from ..distributions.staged_sequence import StagedSequence
from .backbones import BACKBONES, build_backbone
from .base import SequenceModel, ema_update

__all__ = ["DiffusionSettings", "StagePlan", "WindowDiffusion", "noisy_history", "upgrade_state_dict"]


@dataclasses.dataclass(frozen=True)
class DiffusionSettings:
    """The settings of a window diffusion, validated once; :meth:`likelihood_kwargs` hands them to every
    :class:`~pyroseq.distributions.DiffusionLikelihood` the model builds.

    :param float sigma_data: data scale of the preconditioning and the bound.
    :param float sigma_min: smallest noise level (bound and sampler).
    :param float sigma_max: largest noise level (bound and sampler).
    :param str objective: ``"edm"`` (EDM's weighted denoising loss) or ``"bound"`` (the variational bound).
    :param tuple edm_noise: ``(P_mean, P_std)`` of the noise levels of ``"edm"``.
    :param int num_noise_draws: noise draws per event of ``"bound"``.
    :param int num_steps: sampler steps (Heun: ``2 num_steps - 1`` network evaluations; the others:
        ``num_steps``).
    :param int sample_chunk_size: events sampled per network batch.
    :param tuple clip: ``(low, high)`` generated windows are clamped to (in the scaled units), or None.
    :param str sampler: the sampler of :data:`~pyroseq.diffusion.SAMPLERS` that imputation and forecasts use
        (``"heun"``; ``"dpm2m"`` needs about a third of Heun's network evaluations for a similar result).
    """

    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    objective: str = "edm"
    edm_noise: tuple = (-1.2, 1.2)
    num_noise_draws: int = 1
    num_steps: int = 20
    sample_chunk_size: int = 256
    clip: tuple = None
    sampler: str = "heun"

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.objective not in ("edm", "bound"):
            raise ValueError(f"objective must be 'edm' or 'bound', got {self.objective!r}")
        if self.clip is not None and not (len(self.clip) == 2 and self.clip[0] < self.clip[1]):
            raise ValueError(f"clip must be None or a pair (low, high) with low < high, got {self.clip!r}")
        sigma_min, sigma_max, sigma_data = check_noise_range(self.sigma_min, self.sigma_max, self.sigma_data)
        normalised = dict(sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=sigma_data,
                          edm_noise=check_edm_noise(self.edm_noise),
                          num_noise_draws=positive_int("num_noise_draws", self.num_noise_draws),
                          num_steps=positive_int("num_steps", self.num_steps),
                          sample_chunk_size=positive_int("sample_chunk_size", self.sample_chunk_size),
                          clip=None if self.clip is None else (float(self.clip[0]), float(self.clip[1])))
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    def likelihood_kwargs(self, generating=False, **overrides):
        """Keyword arguments of :class:`~pyroseq.distributions.DiffusionLikelihood`; ``clip`` only when
        ``generating`` (a Pyro model's own samples are not clipped), ``overrides`` win (None values are skipped)."""
        kwargs = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        kwargs["clip"] = self.clip if generating else None
        kwargs.update({key: value for key, value in overrides.items() if value is not None})
        return kwargs


def noisy_history(previous, noise, generator=None):
    """``previous + noise * eps`` with standard normal ``eps`` (``previous`` itself if ``noise = 0``): a stage as
    the history encoder sees it under conditioning augmentation.

    :param torch.Tensor previous: stages ``(N, L, C)``.
    :param float noise: the standard deviation.
    :param torch.Generator generator: optional random generator of ``eps``.
    """
    if not noise:
        return previous
    return previous + noise * standard_normal(previous.shape, previous.dtype, previous.device, generator)


def upgrade_state_dict(module, state_dict, prefix=""):
    """Map, in place, the keys of state dicts written by earlier layouts of the window diffusion models onto the
    core's: the networks as ``net.*``/``net_ema.*`` (Stage-Diff, the conditional models), the moving average as
    buffers ``ema_<name with . as __>`` (the first Stage-Diff), the standardisation as ``x_loc``/``x_scale``; a
    scaler missing altogether keeps the state ``module`` was constructed with (the fixed range of its time).

    :param WindowDiffusion module: the model being loaded.
    :param dict state_dict: the state dict (modified in place).
    :param str prefix: the module's prefix in ``state_dict``.
    """
    renames = {"x_loc": "scaler.loc", "x_scale": "scaler.scale"}
    for key in [k for k in state_dict if k.startswith(prefix)]:
        name = key[len(prefix):]
        if name.startswith("ema_") and name != "ema_updates":
            new = "denoiser_ema.net." + name[len("ema_"):].replace("__", ".")
        elif name.startswith(("net.", "net_ema.")):
            head, rest = name.split(".", 1)
            new = ("denoiser." if head == "net" else "denoiser_ema.") + "net." + rest
        elif name in renames:
            new = renames[name]
        else:
            continue
        value = state_dict.pop(key)
        state_dict.setdefault(prefix + new, value)  # "net.*" duplicated "denoiser.net.*": either copy will do
    for name, buffer in module.scaler.named_buffers():
        state_dict.setdefault(prefix + "scaler." + name, buffer)


class _GuidedDenoiser:
    r"""Classifier-free guidance on the history: :math:`D(x; \varnothing) + w (D(x; h) - D(x; \varnothing))`, both
    terms in one network batch; its context is ``{"cond": context, "null": context with "no history" tokens}``."""

    def __init__(self, denoiser, guidance):
        self.denoiser, self.guidance = denoiser, guidance

    def __call__(self, x, sigma, context):
        cond, null = context["cond"], context["null"]
        both = ({key: torch.cat([cond[key], null[key]]) for key in cond} if isinstance(cond, dict)
                else torch.cat([cond, null]))
        with_history, without = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), both).chunk(2)
        return without + self.guidance * (with_history - without)


class StagePlan:
    r"""Windows of ``k`` stages modelled stage by stage by a :class:`WindowDiffusion` with a staged backbone: its
    three methods are the callables of :class:`~pyroseq.distributions.StagedSequence`.

    :param WindowDiffusion core: the model.
    :param dict parts: per-step conditioning parts ``batch_shape + (k L, ...)`` (``"planes"``, ``"observed"``,
        ``"mask"``, ``"target"``), cut into stages here.
    :param int num_stages: ``k``.
    :param tuple batch_shape: the windows' batch shape.
    :param denoiser: the :class:`~pyroseq.diffusion.EDMPrecond` (default ``core.denoiser``).
    :param float history_noise: standard deviation of the noise added to a stage before it is encoded.
    :param torch.Generator generator: generator of that noise, or None.
    :param float guidance: classifier-free guidance weight of the stages after the first (1: none).
    :param overrides: further arguments of the stage distributions (:meth:`WindowDiffusion.distribution`).
    """

    def __init__(self, core, parts, num_stages, batch_shape, denoiser=None, history_noise=0.0, generator=None,
                 guidance=1.0, **overrides):
        self.core, self.num_stages, self.batch_shape = core, num_stages, torch.Size(batch_shape)
        self.parts = {key: value for key, value in parts.items() if value is not None}
        self.denoiser = core.denoiser if denoiser is None else denoiser
        self.history_noise, self.generator, self.guidance = history_noise, generator, guidance
        self.overrides = overrides
        self.stage_length, self.history_shape = self.denoiser.net.stage_length, self.denoiser.net.history_shape

    def _cut(self, t, stages, batch):
        B = len(self.batch_shape)
        t = t.reshape(self.batch_shape + (self.num_stages, self.stage_length) + t.shape[B + 1:])
        t = t[(slice(None),) * B + (stages,)]
        return t.expand(batch + t.shape[B + 1:])

    def distribution(self, history, stages):
        """The distribution of the stages selected by the slice ``stages`` given their history tokens
        ``batch + (n,) + history_shape``: batch shape ``batch + (n,)``, event shape ``(L, C)``."""
        batch = history.shape[: history.dim() - len(self.history_shape)]
        parts = {key: self._cut(value, stages, batch) for key, value in self.parts.items()}
        guidance = self.guidance if (stages.start or 0) > 0 else 1.0
        return self.core.distribution(dict(parts, history=history), batch, denoiser=self.denoiser, guidance=guidance,
                                      **self.overrides)

    def encode(self, previous):
        """History tokens ``batch + (n,) + history_shape`` of the stages after ``previous`` ``batch + (n, L, C)``."""
        flat = noisy_history(previous.reshape((-1,) + previous.shape[-2:]), self.history_noise, self.generator)
        return self.denoiser.net.encode_history(flat).reshape(previous.shape[:-2] + self.history_shape)

    def null(self, batch):
        """The "no history" tokens ``batch + (1,) + history_shape`` of a first stage."""
        return self.denoiser.net.null_history(batch.numel()).reshape(batch + (1,) + self.history_shape)

    def sequence(self):
        """The :class:`~pyroseq.distributions.StagedSequence` of the windows."""
        L, C = self.stage_length, self.core.obs_dim
        return StagedSequence(self.distribution, self.encode, self.null, self.num_stages, (L, C), self.batch_shape)


class WindowDiffusion(SequenceModel):
    r"""The core of the window diffusion models: a backbone network (a key of
    :data:`~pyroseq.models.backbones.BACKBONES`) wrapped by :class:`~pyroseq.diffusion.EDMPrecond`
    (:attr:`denoiser`), its frozen moving average (:attr:`denoiser_ema`, updated by :meth:`on_step` with
    :func:`~pyroseq.models.base.ema_update`), a scaler (a module with ``fit(x, mask)``, ``check(x)``, ``to_unit`` and
    ``from_unit``, saved in the state dict) and one :class:`DiffusionSettings`. Its likelihoods are built by
    :meth:`distribution` (one window or stage) and :meth:`staged` (windows of stages) from conditioning parts (see
    the module docstring); generation samples those distributions.

    **Objective.** :meth:`guide` is empty (no latent variables), so :class:`~pyro.infer.Trace_ELBO` is minus the
    diffusion objective of the observation site ``"x"``: ``"edm"`` (default), EDM's weighted denoising loss, is a
    surrogate that is not a bound but spends every noise draw where sample quality is decided; ``"bound"``, the
    continuous-time variational bound (half its noise draws log-uniform over :math:`[\sigma_\min, \sigma_\max]`),
    makes ``log_prob`` a stochastic lower bound on :math:`\log p(x)` of the scaled windows (likelihood comparisons).

    **Covariates** ``(N, T, p)`` (``covariate_dim = p > 0``: calendar features, exogenous series, a latent path)
    enter the network as one plane ``(T, C)`` each (:meth:`covariate_planes`; ``cond_dim = p``) in every denoiser
    call, trained or averaged; the model and its generation then require them. With ``p = 0`` they must be None
    and the parameters are those of the unconditional model.

    The models are configurations of it: :class:`~pyroseq.models.DiMTS`, :class:`~pyroseq.models.StageDiff`,
    :class:`~pyroseq.models.ConditionalDiffusion` (and through it the emission of
    :class:`~pyroseq.models.LatentDiffusionSSM`).

    :param str backbone: the network, a key of :data:`~pyroseq.models.backbones.BACKBONES`.
    :param int obs_dim: number of channels ``C``.
    :param int length: the network's window (or stage) length.
    :param int covariate_dim: number of covariates per step ``p`` (one plane each).
    :param DiffusionSettings settings: the diffusion settings.
    :param scaler: the scaler module.
    :param float ema_decay: decay of the moving average used for sampling (0: none).
    :param int stage_length: stage length of a staged backbone.
    :param int observation_planes: planes the network reads besides the covariates (2 for observed values and mask).
    :param bool conditional_defaults: build the network with the registry's defaults of the conditional models.
    :param net_kwargs: passed to the network.
    """

    #: How observed values condition the denoiser (:class:`~pyroseq.diffusion.MaskedDenoiser`).
    method = "trained"

    def __init__(self, backbone, obs_dim, length, covariate_dim=0, settings=None, scaler=None, ema_decay=0.999,
                 stage_length=None, observation_planes=0, conditional_defaults=False, **net_kwargs):
        super().__init__()
        self.obs_dim = positive_int("obs_dim", obs_dim)
        self.covariate_dim = nonnegative_int("covariate_dim", covariate_dim)
        if not 0.0 <= float(ema_decay) < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
        if "cond_dim" in net_kwargs:
            raise ValueError(f"cond_dim is set by {type(self).__name__} from covariate_dim; pass covariate_dim instead")
        self.backbone = backbone
        self.settings = DiffusionSettings() if settings is None else settings
        self.scaler = scaler
        net = build_backbone(backbone, self.obs_dim, length, observation_planes + self.covariate_dim, stage_length,
                             conditional_defaults, **net_kwargs)
        self.denoiser = EDMPrecond(net, sigma_data=self.settings.sigma_data)
        # The moving average is a frozen copy of the network (never optimised; saved with the state dict).
        self.denoiser_ema = EDMPrecond(copy.deepcopy(net).requires_grad_(False), sigma_data=self.settings.sigma_data)
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self.ema_decay = float(ema_decay)

    @property
    def net(self):
        """The trained network (``denoiser.net``)."""
        return self.denoiser.net

    @property
    def net_ema(self):
        """The moving average of :attr:`net` (``denoiser_ema.net``)."""
        return self.denoiser_ema.net

    @property
    def staged_backbone(self):
        """Whether windows are modelled stage by stage."""
        return BACKBONES[self.backbone].staged

    # -- conditioning ----------------------------------------------------------------------------------

    def check_covariates(self, covariates, num, length, name="covariates"):
        """Covariates ``(num, length, p)`` are required iff ``p = covariate_dim > 0`` and must be finite floats.

        :raises ValueError: for covariates given with ``p = 0``, missing with ``p > 0``, or of a wrong type, shape
            or with non-finite values.
        """
        model, p = type(self).__name__, self.covariate_dim
        if not p:
            if covariates is not None:
                raise ValueError(f"{name} were given but the model was built with covariate_dim=0 (pass "
                                 f"covariate_dim=p to {model} to condition on p covariates per step)")
            return
        expected = (num, length, p)
        if covariates is None:
            raise ValueError(f"{name} of shape (N, T, p) = {expected} are required (covariate_dim={p})")
        if not torch.is_tensor(covariates) or not torch.is_floating_point(covariates):
            got = covariates.dtype if torch.is_tensor(covariates) else type(covariates).__name__
            raise ValueError(f"{name} must be a floating point tensor of shape (N, T, p) = {expected}, got {got}")
        if tuple(covariates.shape) != expected:
            raise ValueError(f"{name} must have shape (N, T, p) = {expected}, got {tuple(covariates.shape)}")
        if not torch.isfinite(covariates).all():
            raise ValueError(f"{name} contain NaN or infinite values")

    def covariate_planes(self, covariates, length=None):
        """Covariates ``batch + (T, p)`` (or None) as planes ``batch + (T, C, p)``, each covariate repeated over the
        channels, on the network's device and dtype; ``length`` keeps the first steps."""
        if covariates is None:
            return None
        reference = next(self.net.parameters())
        covariates = covariates[..., :length, :].to(reference.device, reference.dtype)
        return covariates[..., None, :].expand(covariates.shape[:-1] + (self.obs_dim, covariates.shape[-1]))

    def check_windows(self, x, mask=None, covariates=None, horizon=0, length=None):
        """Validate complete windows ``x`` ``(N, T, C)`` in data units (``T = length``, or a positive multiple of the
        stage length) and their covariates.

        :returns: ``(x, observed)``, ``observed`` all True.
        :raises ValueError: for a mask or a horizon (unsupported), a wrong type or shape, NaN/inf, values the
            scaler refuses, or covariates that do not fit.
        """
        name = type(self).__name__
        if mask is not None:
            raise ValueError(f"mask is not supported by {name}: pass complete windows (mask=None)")
        if horizon:
            raise ValueError(f"{name} does not forecast (horizon must be 0)")
        if not torch.is_tensor(x) or not torch.is_floating_point(x) or x.dim() != 3:
            got = (x.dtype, tuple(x.shape)) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"x must be a floating point tensor of shape (N, T, C), got {got}")
        N, T, C = x.shape
        stage = None if length else self.net.stage_length
        if N < 1 or C != self.obs_dim or (T != length if length else T < stage or T % stage):
            steps = f"T = {length}" if length else f"T a positive multiple of stage_length={stage}"
            raise ValueError(f"x must have shape (N >= 1, T, C) with {steps} and C = {self.obs_dim} channels, got "
                             f"{tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or infinite values")
        self.scaler.check(x)
        self.check_covariates(covariates, N, T)
        return x, torch.ones_like(x, dtype=torch.bool)

    def pack_context(self, parts, observation=None, net=None):
        """The network context of conditioning parts with any batch shape.

        :param dict parts: ``"planes"`` ``batch + (T, C, K)`` and ``"history"`` ``batch + history_shape`` (each
            optional).
        :param torch.Tensor observation: observation planes ``batch + (T, C, 2)`` (first), or None.
        :param net: the network (default :attr:`net`).
        :returns: what the network's ``pack_context`` returns, with ``batch`` in front.
        """
        net = self.net if net is None else net
        parts = parts or {}
        planes = [p for p in (observation, parts.get("planes")) if p is not None]
        history = parts.get("history")
        if not planes and history is None:
            return None
        batch = planes[0].shape[:-3] if planes else history.shape[: history.dim() - len(net.history_shape)]

        def flat(t):
            return None if t is None else t.reshape((batch.numel(),) + t.shape[len(batch):])

        cond = flat(planes[0] if len(planes) == 1 else torch.cat(planes, -1)) if planes else None
        context = (net.pack_context(cond=cond) if history is None else
                   net.pack_context(history=flat(history), cond=cond))
        return map_context(lambda c: c.reshape(batch + c.shape[1:]), context)

    # -- distributions ---------------------------------------------------------------------------------

    def distribution(self, parts, batch_shape, denoiser=None, event_shape=None, guidance=1.0, generating=False,
                     require_observed=False, **overrides):
        """The diffusion likelihood of windows (or stages) given conditioning parts: a
        :class:`~pyroseq.distributions.ConditionalDiffusionLikelihood` if ``parts`` has ``"observed"`` values,
        else a :class:`~pyroseq.distributions.DiffusionLikelihood`.

        :param dict parts: conditioning parts with leading ``batch_shape``.
        :param tuple batch_shape: the batch shape.
        :param denoiser: an :class:`~pyroseq.diffusion.EDMPrecond` (default :attr:`denoiser`).
        :param tuple event_shape: ``(T, C)`` (needed without observed values).
        :param float guidance: classifier-free guidance weight on the history (1: none).
        :param bool generating: clip samples as :attr:`settings` say.
        :param bool require_observed: every window needs an observed entry.
        :param overrides: other arguments of the distribution (``objective``, ``sampler``, ``sampler_kwargs``, ...).
        """
        denoiser, batch_shape = self.denoiser if denoiser is None else denoiser, torch.Size(batch_shape)
        net = denoiser.net
        kwargs = self.settings.likelihood_kwargs(generating, **overrides)
        if "observed" in parts:
            context = {"planes": parts.get("planes"), "history": parts.get("history")}
            return ConditionalDiffusionLikelihood(
                denoiser, parts["observed"], parts["mask"], context=context, target=parts.get("target"),
                method=self.method, pack_context=lambda planes, context: self.pack_context(context, planes, net),
                require_observed=require_observed, **kwargs)
        context = self.pack_context(parts, net=net)
        if guidance != 1.0:
            null = net.null_history(batch_shape.numel()).reshape(batch_shape + net.history_shape)
            context = {"cond": context, "null": self.pack_context(dict(parts, history=null), net=net)}
            denoiser = _GuidedDenoiser(denoiser, guidance)
        return DiffusionLikelihood(denoiser, event_shape or (self.net.stage_length, self.obs_dim), context=context,
                                   batch_shape=batch_shape, **kwargs)

    def staged(self, parts, num_stages, batch_shape, **options):
        """The :class:`~pyroseq.distributions.StagedSequence` of windows of ``num_stages`` stages (teacher-forced
        ``log_prob``, sequential ``sample``); ``options`` as :class:`StagePlan`."""
        return StagePlan(self, parts, num_stages, batch_shape, **options).sequence()

    # -- training --------------------------------------------------------------------------------------

    def check_inputs(self, x, mask=None, covariates=None, horizon=0):
        """Validate complete windows ``x`` ``(N, T, C)`` in data units and their covariates ``(N, T, p)``
        (:meth:`check_windows`): ``T`` is the model's ``length``, or a multiple of the stage length for a staged
        backbone; returns ``(x, observed)``."""
        return self.check_windows(x, mask, covariates, horizon, None if self.staged_backbone else self.length)

    @torch.no_grad()
    def initialize(self, x, mask=None, covariates=None):
        """Called once by :func:`~pyroseq.inference.fit` before training (not on resume): fits the scaler to the
        training windows and restarts the moving average from the network."""
        x, mask = self.check_inputs(x, mask, covariates)
        self.scaler.fit(x, mask)
        self.reset_moving_average()

    def guide(self, x, mask=None, covariates=None):
        """Empty: the model has no latent variables."""

    def param_groups(self):
        """Parameter groups for :func:`~pyroseq.inference.fit`: the network is the ``"denoiser"``."""
        return {"denoiser": list(self.net.parameters())}

    @torch.no_grad()
    def reset_moving_average(self):
        """Restart the moving average from the current network."""
        self.net_ema.load_state_dict(self.net.state_dict())
        self.ema_updates.zero_()

    @torch.no_grad()
    def on_step(self, step=None):
        """Update the moving average of the weights (after every optimiser step; nothing if ``ema_decay = 0``);
        the decay warms up as ``min(ema_decay, (1 + n) / (10 + n))`` after ``n`` updates."""
        if self.ema_decay > 0:
            ema_update(self.net_ema, self.net, self.ema_updates, self.ema_decay)

    # -- sampling --------------------------------------------------------------------------------------

    def sampling_denoiser(self, use_ema=True):
        """The denoiser generation uses: the moving average if it was updated and ``use_ema``."""
        if use_ema and self.ema_decay > 0 and int(self.ema_updates) > 0:
            return self.denoiser_ema
        return self.denoiser

    def generation_options(self, sampler="heun", num_steps=None, chunk_size=None, seed=None, use_ema=True,
                           **sampler_kwargs):
        """The arguments of :meth:`distribution` for one generation call: the sampling denoiser
        (:meth:`sampling_denoiser`), the sampler and its arguments, the chunk size and clipping.

        :param str sampler: a name of :data:`~pyroseq.diffusion.SAMPLERS` (``"heun"``: ``2 num_steps - 1`` network
            evaluations; ``"ddpm"``, the ancestral baseline: ``num_steps``).
        :param int num_steps: sampler steps (default: the model's ``num_steps``, 500 for DDPM).
        :param int chunk_size: windows (or series) per network batch (default ``sample_chunk_size``; bounds memory).
        :param int seed: seed of a private generator (reproducible output), or None for the global one.
        :param bool use_ema: sample with the moving-average weights (if :meth:`on_step` updated them).
        :param sampler_kwargs: extra arguments of the sampler (e.g. ``S_churn``, ``S_min``, ``S_max`` for
            stochastic Heun steps, ``sigma_data=None`` for the plain EDM ODE).
        :returns: a dict; its ``sampler_kwargs["generator"]`` is the generator.
        """
        num_steps = sampler_steps(sampler, num_steps, self.num_steps)
        chunk_size = self.sample_chunk_size if chunk_size is None else positive_int("chunk_size", chunk_size)
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        return dict(denoiser=self.sampling_denoiser(use_ema), generating=True, sampler=sampler,
                    sample_chunk_size=chunk_size, sampler_kwargs=dict(sampler_kwargs, num_steps=num_steps,
                                                                      generator=generator))

    @contextlib.contextmanager
    def sampling(self):
        """Evaluation mode, no gradients and no per-call validation (inputs are checked once, up front)."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad(), pyro.validation_enabled(False):
                yield
        finally:
            self.train(was_training)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        upgrade_state_dict(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _setting(name):
    def get(self):
        return getattr(self.settings, name)

    def set(self, value):
        self.settings = dataclasses.replace(self.settings, **{name: value})

    return property(get, set, doc=f"``settings.{name}`` (setting it replaces :attr:`settings`).")


for _field in dataclasses.fields(DiffusionSettings):
    if _field.name != "clip":  # each model documents its own clip argument
        setattr(WindowDiffusion, _field.name, _setting(_field.name))
