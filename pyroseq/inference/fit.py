"""Stochastic variational inference for sequence models: KL warm-up, per-module learning rates,
gradient clipping, moving averages, exact checkpoint/resume, finite checks, data-parallel training
(:mod:`torch.distributed`), bfloat16 autocast and data sets larger than memory."""

import inspect
import math
import os
import warnings

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import Trace_ELBO
from tqdm.auto import tqdm

from ..models.base import as_float_tensor
from .checkpoint import (
    CheckpointError,
    get_rng_states,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    set_rng_states,
)
from .distributed import (
    all_gather_objects,
    average_gradients,
    barrier,
    broadcast_module,
    setup_distributed,
    shard_indices,
)
from .precision import autocast, check_precision
from .protocol import TrainingHooks
from .schedules import check_kl_schedule, kl_weight, scale_sites

__all__ = ["fit", "PARAM_GROUPS", "NonFiniteError", "as_model_input", "takes_index"]

_NONFINITE = ("raise", "skip")
#: Consecutive skipped (non-finite) steps after which ``nonfinite="skip"`` gives up.
MAX_SKIPPED_STEPS = 10
#: Sequences of a data set object (not a tensor) shown to ``model.initialize`` (a random subset).
INIT_SEQUENCES = 4096
_CHECKPOINT_KEYS = ("step", "losses", "model", "optimizer", "rng", "config")


class NonFiniteError(FloatingPointError, ValueError):
    """The loss, a gradient or a parameter became NaN or infinite during :func:`fit`; the message names
    the step and, where a re-run under a trace finds them, the offending sample sites and parameters.

    :ivar int step: the 0-based optimisation step.
    :ivar list sites: sites (``"model:x"``, ``"guide:z"``) with a non-finite value or log-density.
    :ivar list params: parameter names with a non-finite gradient or value.
    """

    def __init__(self, message, step=None, sites=(), params=()):
        super().__init__(message)
        self.step, self.sites, self.params = step, list(sites), list(params)

#: Parameter group names a model's ``param_groups()`` may use (plus ``"other"`` for the rest).
PARAM_GROUPS = ("encoder", "decoder", "transition", "initial", "denoiser", "other")


def _check_positive_int(name, value, allow_zero=False):
    if int(value) != value or value < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer, "
                         f"got {value!r}")
    return int(value)


def _is_dataset(x):
    return (not torch.is_tensor(x) and not isinstance(x, (str, bytes)) and hasattr(x, "__len__")
            and hasattr(x, "__getitem__"))


def _take(data, idx):
    """Rows ``idx`` of a tensor or of a data set object (``data[idx]`` with an index tensor)."""
    return None if data is None else data[idx]


def takes_index(fn):
    """Whether a model or guide callable accepts the keyword arguments ``index`` and ``num_series`` (plate
    subsampling over the data set's series, e.g. a local guide with per-series parameters)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return all(name in params for name in ("index", "num_series")) or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _model_dtype(model):
    for p in model.parameters() if isinstance(model, torch.nn.Module) else ():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def as_model_input(model, value, name="x"):
    """``value`` as the model expects it: a floating point numpy array or a tensor of another floating dtype
    (e.g. float64) becomes a tensor of the model's dtype, a boolean array a boolean tensor; anything else is
    returned unchanged (and validated downstream).

    :param model: a model object (its first floating point parameter gives the dtype).
    :param value: an array, a tensor, a data set object or None.
    :param str name: the argument's name, for error messages.
    """
    if isinstance(value, np.ndarray) and not (value.dtype == np.bool_ or np.issubdtype(value.dtype, np.floating)):
        raise ValueError(f"{name} must be a floating point (or, for a mask, boolean) array, got numpy dtype "
                         f"{value.dtype}")
    return as_float_tensor(value, _model_dtype(model), name)


def _check_data(x, mask, covariates):
    if _is_dataset(x):
        return _check_dataset(x, mask, covariates)
    if not torch.is_tensor(x) or not torch.is_floating_point(x):
        raise ValueError(f"x must be a floating point torch.Tensor of shape (N, T, C), got "
                         f"{type(x).__name__ if not torch.is_tensor(x) else x.dtype}")
    if x.dim() != 3:
        raise ValueError(f"x must have rank 3, shape (N, T, C), got shape {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError("x must hold at least one sequence")
    for name, value in (("mask", mask), ("covariates", covariates)):
        if value is not None and (not torch.is_tensor(value) or value.shape[0] != x.shape[0]):
            raise ValueError(f"{name} must be a tensor with the same first dim as x ({x.shape[0]}), got "
                             f"{tuple(value.shape) if torch.is_tensor(value) else type(value).__name__}")
    return x.shape[0]


def _check_dataset(x, mask, covariates):
    """A data set object: ``len(x)`` sequences, ``x[idx]`` (index tensor of shape (B,)) a float tensor
    (B, T, C). Only two rows are read here."""
    N = len(x)
    if N < 1:
        raise ValueError("x must hold at least one sequence, got an empty data set")
    try:
        probe = x[torch.arange(min(N, 2))]
    except (IndexError, TypeError, KeyError) as e:
        raise ValueError(f"a data set x must accept an index tensor, x[torch.arange(2)] raised {e!r}") from e
    if not torch.is_tensor(probe) or not torch.is_floating_point(probe) or probe.dim() != 3:
        raise ValueError(f"a data set x must return a floating point tensor of shape (B, T, C) from x[index_tensor], "
                         f"got {type(probe).__name__ if not torch.is_tensor(probe) else (probe.dtype, probe.shape)}")
    for name, value in (("mask", mask), ("covariates", covariates)):
        if value is not None and len(value) != N:
            raise ValueError(f"{name} must have the same length as x ({N}), got {len(value)}")
    return N


def _pyro_params(model, args, kwargs):
    """The unconstrained tensors of the ``pyro.param`` sites of guide and model that the model object does
    not own (e.g. the per-series parameters of a local guide), by name. Runs guide and model once, with the
    global random state restored afterwards (so training is unchanged by this probe)."""
    state = get_rng_states()
    try:
        with poutine.trace(param_only=True) as params, torch.no_grad(), pyro.validation_enabled(False):
            guide_trace = poutine.trace(model.guide).get_trace(*args, **kwargs)
            poutine.replay(model.model, trace=guide_trace)(*args, **kwargs)
    except Exception:  # noqa: BLE001 - the first training step reports whatever went wrong, with its context
        pass
    finally:
        set_rng_states(state)
    owned = {id(p) for p in model.parameters()}
    extra = {}
    for name, site in params.trace.nodes.items():
        value = site["value"]
        value = value.unconstrained() if hasattr(value, "unconstrained") else value
        if torch.is_tensor(value) and value.requires_grad and id(value) not in owned:
            extra[name] = value
    return extra


def _build_optimizer(model, lr, lrs, betas, extra=(), hooks=None):
    """One Adam with a parameter group per role (``model.param_groups()``), trainable params only; ``extra``
    parameters (Pyro params the model does not own) join the ``"other"`` group."""
    lrs = dict(lrs or {})
    unknown = set(lrs) - set(PARAM_GROUPS)
    if unknown:
        raise ValueError(f"lrs has unknown parameter groups {sorted(unknown)}; allowed: {PARAM_GROUPS}")
    named = (hooks or TrainingHooks(model)).param_groups()
    bad = set(named) - set(PARAM_GROUPS)
    if bad:
        raise ValueError(f"model.param_groups() returned unknown groups {sorted(bad)}; allowed: {PARAM_GROUPS}")
    seen, groups = set(), []
    for name in PARAM_GROUPS:
        if name == "other":
            params = [p for p in [*model.parameters(), *extra] if p.requires_grad and id(p) not in seen]
        else:
            params = [p for p in named.get(name, []) if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            group_lr = float(lrs.get(name, lr))
            if not group_lr > 0:
                raise ValueError(f"learning rate of group {name!r} must be positive, got {group_lr}")
            groups.append({"params": params, "lr": group_lr, "base_lr": group_lr, "name": name})
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.Adam(groups, betas=betas)


def _lr_factor(step, num_steps, lr_decay):
    if lr_decay is None or num_steps <= 1:
        return 1.0
    frac = min(step / (num_steps - 1), 1.0)
    return lr_decay + (1 - lr_decay) * 0.5 * (1 + math.cos(math.pi * frac))


def _nonfinite_sites(model, elbo_args, kwargs, sites, weight, precision, device_type):
    """Re-run guide and model under a trace (same inputs, fresh noise) and list the sample sites whose
    value or log-density is not finite. The global RNG state is restored afterwards."""
    state = get_rng_states()
    found = []
    try:
        with torch.no_grad(), pyro.validation_enabled(False), scale_sites(sites=sites, scale=weight), \
                autocast(precision, device_type):
            guide_trace = poutine.trace(model.guide).get_trace(*elbo_args, **kwargs)
            model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(*elbo_args, **kwargs)
            for prefix, trace in (("guide", guide_trace), ("model", model_trace)):
                for name, site in trace.nodes.items():
                    if site["type"] != "sample":
                        continue
                    value = site["value"]
                    if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                        if not (prefix == "model" and site["is_observed"]):  # observed NaN = missing data
                            found.append(f"{prefix}:{name} (value)")
                            continue
                    try:
                        log_prob = site["fn"].log_prob(value)
                    except Exception as e:  # a distribution rejecting its value is itself the diagnosis
                        found.append(f"{prefix}:{name} (log_prob raised {type(e).__name__})")
                        continue
                    mask = site.get("mask")
                    if mask is not None and not isinstance(mask, bool):
                        log_prob = torch.where(mask, log_prob, torch.zeros((), dtype=log_prob.dtype))
                    if not bool(torch.isfinite(log_prob).all()):
                        found.append(f"{prefix}:{name} (log_prob)")
    except Exception as e:
        found.append(f"(the diagnostic re-run raised {type(e).__name__}: {str(e)[:120]})")
    finally:
        set_rng_states(state)
    return found


def fit(model, x, num_steps=1000, batch_size=64, seed=0, lr=1e-3, lrs=None, kl_schedule=None, clip_norm=10.0,
        ema_decay=None, checkpoint=None, checkpoint_every=None, resume=True, progress=True, mask=None,
        covariates=None, num_particles=1, lr_decay=None, betas=(0.9, 0.999), callback=None, *,
        distributed="auto", precision=None, nonfinite="raise", validate_steps=False, elbo=None):
    r"""Train a model/guide pair (see :class:`~pyroseq.models.SequenceModel`) by stochastic variational
    inference: minibatches of sequences, :class:`~pyro.infer.Trace_ELBO` with the KL weight
    :math:`\lambda` on the model's ``latent_sites`` (a :class:`~pyroseq.inference.SiteScaleMessenger`
    on model and guide), Adam with one learning rate per parameter group, global gradient-norm
    clipping, and ``model.on_step(step)`` after every update (moving averages). A model with a
    ``kl_weight`` attribute is told the current :math:`\lambda` before every step.

    The loss is the negative (annealed) ELBO **per sequence** of the minibatch. With a diffusion
    transition or likelihood it is a stochastic upper bound on :math:`-\log p(x)` (when
    :math:`\lambda = 1`).

    Reproducibility: the global generators are seeded with ``seed`` and minibatches come from a
    dedicated generator, all saved in the checkpoint, so ``fit(num_steps=200, checkpoint=p)`` followed
    by ``fit(num_steps=400, checkpoint=p, resume=True)`` on a freshly constructed model gives exactly the
    result of ``fit(num_steps=400)`` (construct the models under the same seed). The same holds after the
    process was killed at any point: checkpoints are replaced atomically, so the last complete one is
    resumed; a corrupt checkpoint raises :class:`~pyroseq.inference.checkpoint.CheckpointError`.

    Data larger than memory: ``x`` may be a data set object instead of a tensor, with ``len(x)``
    sequences and ``x[idx]`` returning the float tensor ``(B, T, C)`` of the rows in the index tensor
    ``idx`` of shape ``(B,)`` (e.g. :class:`~pyroseq.data.MemmapWindows`); only the minibatch is read at
    every step, and ``model.initialize`` sees a random subset of at most :data:`INIT_SEQUENCES`
    sequences. ``mask`` and ``covariates`` may be such objects too.

    Data-parallel training (``distributed``): launched as ``torchrun --nproc_per_node=P script.py``
    (or with a default process group already initialised), every rank takes its contiguous share
    ``batch_size / P`` of the same global minibatch, gradients and the loss are averaged over ranks
    with one ``all_reduce`` per step, and all ranks start from rank 0's parameters, so parameters stay
    bit-identical across ranks and the update is that of the global minibatch. Rank ``r`` seeds its
    global generators with ``seed + r`` (independent noise); only rank 0 shows progress and writes
    checkpoints (which hold every rank's generator states, so resuming with the same number of
    processes is exact). The backend is gloo on CPU and NCCL with CUDA (see
    :func:`~pyroseq.inference.distributed.setup_distributed`). Single-process training is the default.

    Interrupts: a :class:`KeyboardInterrupt` (Ctrl-C) during training writes the checkpoint of the completed
    steps (single process, when ``checkpoint`` is given) and is then raised again, so a later call resumes; the
    resumed run is exact if the interrupt came between two steps (e.g. from ``callback``).

    Finite checks: a non-finite loss or gradient raises :class:`NonFiniteError` (a
    :class:`FloatingPointError` and :class:`ValueError`) naming the step, the sample sites whose value or
    log-density is not finite in a traced re-run, and the parameters with non-finite gradients;
    ``nonfinite="skip"`` instead skips the update with a warning (the loss history records the
    non-finite value), giving up after :data:`MAX_SKIPPED_STEPS` consecutive skips.

    :param model: a ``PyroModule`` with ``model`` and ``guide`` methods.
    :param x: training sequences, a tensor of shape ``(N, T, C)`` (NaN = missing, if the model allows)
        or a data set object (see above).
    :param int num_steps: total number of optimisation steps (including those of a resumed checkpoint).
    :param int batch_size: sequences per step (capped at ``N``; drawn without replacement per step; all ``N``
        in their order when ``batch_size >= N``); the *global* minibatch when distributed (a multiple of the
        number of processes).
    :param int seed: random seed.
    :param float lr: learning rate of every group not in ``lrs``.
    :param dict lrs: learning rate per group, keys among ``"encoder"``, ``"decoder"``, ``"transition"``,
        ``"initial"``, ``"denoiser"``, ``"other"``.
    :param tuple kl_schedule: ``(kind, warmup_steps, lambda_end[, lambda_start])`` with kind
        ``"linear"``, ``"cosine"`` or None; None means :math:`\lambda = 1` throughout.
    :param float clip_norm: maximum global gradient norm (None: no clipping).
    :param float ema_decay: the moving-average decay the caller expects; the model owns it (chosen at construction,
        e.g. ``ema_decay=0`` for none), so a different value raises ValueError instead of overwriting it. None
        (default) keeps the model's setting.
    :param str checkpoint: path of a checkpoint file (None: no checkpointing).
    :param int checkpoint_every: save every this many steps (default: only at the end).
    :param bool resume: continue from ``checkpoint`` if the file exists.
    :param bool progress: show a tqdm progress bar with the running loss (rank 0 only).
    :param torch.Tensor mask: optional observation mask ``(N, T, C)`` or ``(N, T)``.
    :param torch.Tensor covariates: optional covariates ``(N, T, p)``.
    :param int num_particles: ELBO particles per step (of the default :class:`~pyro.infer.Trace_ELBO`).
    :param float lr_decay: if given, learning rates follow a cosine from their base value to
        ``lr_decay`` times it at ``num_steps`` (so resuming with another ``num_steps`` changes it).
    :param tuple betas: Adam's betas.
    :param callable callback: called as ``callback(step, loss)`` after every step (on every rank).
    :param distributed: ``"auto"`` (default: data-parallel if a process group exists or ``torchrun``
        launched this process, else single-process), True (require it) or False (never).
    :param str precision: None / ``"fp32"`` (default) or ``"bf16"`` (model and guide run under bfloat16
        autocast; parameters, gradients and optimiser state stay float32).
    :param str nonfinite: ``"raise"`` (default) or ``"skip"`` (see above).
    :param elbo: the Pyro ELBO to optimise, e.g. ``TraceEnum_ELBO(max_plate_nesting=1)`` for a model whose
        discrete sites are enumerated, or ``Trace_ELBO(num_particles=8, vectorize_particles=True)`` (default:
        ``Trace_ELBO(num_particles)``). Its ``differentiable_loss`` is used, so every feature above applies.
    :param bool validate_steps: keep Pyro's validation on during the optimisation steps. By default the data are
        validated once, in full, before training (``model.check_inputs`` on the whole tensor), and the steps run
        with :func:`pyro.validation_enabled` ``(False)``, so that no model, guide or distribution re-reads every
        element of every batch; non-finite losses and gradients are still caught (see above).
    :returns: the loss history, a list of floats of length ``num_steps`` (averaged over ranks).
    """
    hooks = TrainingHooks(model)  # raises ValueError without model and guide methods
    x = as_model_input(model, x)
    mask = as_model_input(model, mask, "mask")
    covariates = as_model_input(model, covariates, "covariates")
    N = _check_data(x, mask, covariates)
    if torch.is_tensor(x):
        with pyro.validation_enabled(True):  # the full check, once, at the boundary
            hooks.check_inputs(x, mask, covariates)
    num_steps = _check_positive_int("num_steps", num_steps, allow_zero=True)
    batch_size = min(_check_positive_int("batch_size", batch_size), N)
    num_particles = _check_positive_int("num_particles", num_particles)
    schedule = check_kl_schedule(kl_schedule)
    precision = check_precision(precision)
    if nonfinite not in _NONFINITE:
        raise ValueError(f"nonfinite must be one of {_NONFINITE}, got {nonfinite!r}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive or None, got {clip_norm}")
    if checkpoint_every is not None:
        checkpoint_every = _check_positive_int("checkpoint_every", checkpoint_every)
    if lr_decay is not None and not 0 <= lr_decay <= 1:
        raise ValueError(f"lr_decay must be in [0, 1] or None, got {lr_decay}")
    if ema_decay is not None:
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        hooks.set_ema_decay(ema_decay)
    ctx = setup_distributed(distributed)
    if batch_size % ctx.world_size:
        raise ValueError(f"batch_size ({batch_size}, capped at N = {N}) must be a multiple of the number of "
                         f"processes ({ctx.world_size})")
    config = {"seed": seed, "batch_size": batch_size}
    if ctx.enabled:
        config["world_size"] = ctx.world_size

    pyro.set_rng_seed(seed + ctx.rank)
    batches = torch.Generator().manual_seed(seed)
    optimizer = None
    losses, start = [], 0
    if checkpoint is not None and ctx.is_main:
        remove_stale_temporaries(checkpoint)  # left by a process killed while saving; the checkpoint is intact
    resuming = checkpoint is not None and resume and os.path.exists(checkpoint)
    if ctx.enabled and len(set(all_gather_objects(resuming, ctx))) > 1:
        raise ValueError(f"checkpoint {checkpoint} exists on some ranks only; data-parallel checkpointing needs a "
                         f"file system shared by all ranks")
    subsample = takes_index(model.model) and takes_index(model.guide)

    def batch_args(idx):
        extra = dict(index=idx, num_series=N) if subsample else {}
        return (x[idx],), dict(mask=_take(mask, idx), covariates=_take(covariates, idx), **extra)

    def pyro_params():
        # Pyro params that live outside the model object (local guides) are trained and checkpointed too.
        return _pyro_params(model, *batch_args(torch.arange(min(N, batch_size))))

    if resuming:
        state = load_checkpoint(checkpoint, required=_CHECKPOINT_KEYS)
        if state["config"] != config:
            warnings.warn(f"resuming {checkpoint} with different settings ({state['config']}); the run will not "
                          f"match an uninterrupted one", stacklevel=2)
        try:
            model.load_state_dict(state["model"])
            extra_params = pyro_params()
            saved = state.get("pyro_params", {})
            if set(saved) != set(extra_params):
                raise ValueError(f"Pyro params {sorted(saved)} in the checkpoint, {sorted(extra_params)} in the guide")
            with torch.no_grad():
                for name, value in saved.items():
                    extra_params[name].copy_(value)
            optimizer = _build_optimizer(model, lr, lrs, betas, extra_params.values(), hooks)
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"checkpoint file {os.fspath(checkpoint)!r} does not fit this model and "
                                  f"optimiser: {str(e)[:300]}") from e
        rng = state["rng"]
        if isinstance(rng, list):  # one entry per rank of the run that wrote it
            rng = rng[ctx.rank % len(rng)]
        set_rng_states(rng, {"batches": batches})
        losses, start = list(state["losses"]), int(state["step"])
    else:
        if torch.is_tensor(x):
            hooks.initialize(x, mask=mask, covariates=covariates)
        else:
            sub = (torch.arange(N) if N <= INIT_SEQUENCES else
                   torch.randperm(N, generator=torch.Generator().manual_seed(seed))[:INIT_SEQUENCES].sort().values)
            hooks.initialize(x[sub], mask=_take(mask, sub), covariates=_take(covariates, sub))
        extra_params = pyro_params()
        optimizer = _build_optimizer(model, lr, lrs, betas, extra_params.values(), hooks)
    broadcast_module(model, ctx)

    params = [p for group in optimizer.param_groups for p in group["params"]]
    names = {id(p): name for name, p in model.named_parameters()}
    names.update({id(p): name for name, p in extra_params.items()})
    sites = hooks.latent_sites
    if elbo is None:
        elbo = Trace_ELBO(num_particles=num_particles)
    elif not hasattr(elbo, "differentiable_loss"):
        raise ValueError(f"elbo must be a Pyro ELBO with a differentiable_loss method (e.g. TraceEnum_ELBO()), got "
                         f"{type(elbo).__name__}")
    elif num_particles != 1:
        raise ValueError("give num_particles to the elbo itself, not to fit, when elbo is given")
    device_type = params[0].device.type

    def save(step):
        rng = get_rng_states({"batches": batches})
        if ctx.enabled:
            rng = all_gather_objects(rng, ctx)  # a collective: every rank takes part
        if not all(bool(torch.isfinite(p).all()) for p in params):
            bad = [names.get(id(p), "?") for p in params if not bool(torch.isfinite(p).all())]
            raise NonFiniteError(f"parameters {bad[:10]} are not finite at step {step}; the checkpoint "
                                 f"{checkpoint} was not overwritten", step=step, params=bad)
        if ctx.is_main:
            save_checkpoint(checkpoint, {
                "step": step, "losses": losses, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "rng": rng, "config": config,
                "pyro_params": {name: p.detach().clone() for name, p in extra_params.items()},
            })
        if ctx.enabled:
            barrier(ctx)  # no rank runs ahead (e.g. into a resume) before the file is complete

    model.train()
    bar = tqdm(range(start, num_steps), initial=start, total=num_steps, disable=not (progress and ctx.is_main),
               desc=f"fit {type(model).__name__}", leave=False)
    running, skipped = None, 0
    try:
        for step in bar:
            # A batch of the whole data set keeps its order (then fit is exactly an SVI loop on x).
            order = torch.arange(N) if batch_size == N else torch.randperm(N, generator=batches)[:batch_size]
            idx = shard_indices(order, ctx)
            (xb,), kwargs = batch_args(idx)
            mb, cb = kwargs.pop("mask"), kwargs.pop("covariates")
            extra = kwargs  # index and num_series, for model/guide pairs that subsample their plates
            factor = _lr_factor(step, num_steps, lr_decay)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            weight = kl_weight(step, schedule)
            hooks.set_kl_weight(weight)
            invalid = None
            try:
                with scale_sites(sites=sites, scale=weight), autocast(precision, device_type), \
                        pyro.validation_enabled(pyro.poutine.util.is_validation_enabled() and bool(validate_steps)):
                    loss = elbo.differentiable_loss(model.model, model.guide, xb, mask=mb, covariates=cb, **extra)
                    loss = loss / (N if subsample else len(idx))
                loss = loss.float() if loss.dtype == torch.bfloat16 else loss
            except ValueError as e:
                # With validation on, a distribution given NaN parameters raises deep inside torch; report it
                # as a non-finite step (below) when that is what happened, else it is a genuine input error.
                if "invalid values" not in str(e) and all(bool(torch.isfinite(p).all()) for p in params):
                    raise
                invalid, loss = e, torch.tensor(float("nan"))
            optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad and (bool(torch.isfinite(loss)) or ctx.enabled):  # all ranks reach all_reduce
                loss.backward()
            (loss_avg,) = average_gradients(params, ctx, loss)
            value = loss_avg.item()
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
            if clip_norm is not None and bool(torch.isfinite(norm)):  # same as clip_grad_norm_, after the check
                torch.nn.utils.clip_grads_with_norm_(params, clip_norm, norm)
            if not (math.isfinite(value) and bool(torch.isfinite(norm))):
                bad = [names.get(id(p), "?") for p in params if not bool(torch.isfinite(p).all())
                       or (p.grad is not None and not bool(torch.isfinite(p.grad).all()))]
                what = f"the loss is not finite at step {step}: {value}" if not math.isfinite(value) else \
                    f"the gradient is not finite at step {step} (loss {value:.6g})"
                if nonfinite == "raise" or skipped + 1 >= MAX_SKIPPED_STEPS:
                    found = _nonfinite_sites(model, (xb,), dict(mask=mb, covariates=cb, **extra), sites, weight,
                                             precision, device_type)
                    raise NonFiniteError(
                        f"{what}; sites with non-finite values or log-densities in a traced re-run: "
                        f"{found or 'none (the failure did not reproduce with fresh noise)'}; parameters with "
                        f"non-finite values or gradients: {bad[:10] or 'none'}"
                        + (f" ({skipped + 1} consecutive steps skipped)" if nonfinite == "skip" else ""),
                        step=step, sites=found, params=bad) from invalid
                warnings.warn(f"{what}; skipping this update (parameters with non-finite gradients: {bad[:10]})",
                              RuntimeWarning, stacklevel=2)
                skipped += 1
                optimizer.zero_grad(set_to_none=True)
            else:
                skipped = 0
                optimizer.step()
                hooks.on_step(step)
            losses.append(value)
            running = value if running is None else 0.98 * running + 0.02 * value
            if progress and ctx.is_main and (step % 10 == 0 or step + 1 == num_steps):
                bar.set_postfix(loss=f"{running:.4g}")
            if callback is not None:
                callback(step, value)
            if checkpoint is not None and checkpoint_every is not None and (step + 1) % checkpoint_every == 0:
                save(step + 1)
    except KeyboardInterrupt:
        # Keep what was trained: the checkpoint holds the completed steps (exact when the interrupt arrives
        # between steps, as the command line arranges), then the interrupt goes on.
        bar.close()
        if checkpoint is not None and ctx.is_main and not ctx.enabled and len(losses) > start:
            save(len(losses))
        model.eval()
        raise
    bar.close()
    if checkpoint is not None and start < num_steps:
        save(num_steps)
    hooks.set_kl_weight(kl_weight(num_steps, schedule))
    model.eval()
    return losses
