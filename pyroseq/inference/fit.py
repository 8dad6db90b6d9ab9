"""Stochastic variational inference for sequence models: KL warm-up, per-module learning rates,
gradient clipping, moving averages, exact checkpoint/resume."""

import math
import os
import warnings

import pyro
import torch
from pyro.infer import Trace_ELBO
from tqdm.auto import tqdm

from .checkpoint import get_rng_states, load_checkpoint, save_checkpoint, set_rng_states
from .schedules import check_kl_schedule, kl_weight, scale_sites

__all__ = ["fit", "PARAM_GROUPS"]

#: Parameter group names a model's ``param_groups()`` may use (plus ``"other"`` for the rest).
PARAM_GROUPS = ("encoder", "decoder", "transition", "initial", "denoiser", "other")


def _check_positive_int(name, value, allow_zero=False):
    if int(value) != value or value < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer, "
                         f"got {value!r}")
    return int(value)


def _check_data(x, mask, covariates):
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


def _build_optimizer(model, lr, lrs, betas):
    """One Adam with a parameter group per role (``model.param_groups()``), trainable params only."""
    lrs = dict(lrs or {})
    unknown = set(lrs) - set(PARAM_GROUPS)
    if unknown:
        raise ValueError(f"lrs has unknown parameter groups {sorted(unknown)}; allowed: {PARAM_GROUPS}")
    named = model.param_groups() if hasattr(model, "param_groups") else {}
    bad = set(named) - set(PARAM_GROUPS)
    if bad:
        raise ValueError(f"model.param_groups() returned unknown groups {sorted(bad)}; allowed: {PARAM_GROUPS}")
    seen, groups = set(), []
    for name in PARAM_GROUPS:
        if name == "other":
            params = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
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


def fit(model, x, num_steps=1000, batch_size=64, seed=0, lr=1e-3, lrs=None, kl_schedule=None, clip_norm=10.0,
        ema_decay=0.999, checkpoint=None, checkpoint_every=None, resume=True, progress=True, mask=None,
        covariates=None, num_particles=1, lr_decay=None, betas=(0.9, 0.999), callback=None):
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
    result of ``fit(num_steps=400)`` (construct the models under the same seed).

    :param model: a ``PyroModule`` with ``model`` and ``guide`` methods.
    :param torch.Tensor x: training sequences of shape ``(N, T, C)`` (NaN = missing, if the model allows).
    :param int num_steps: total number of optimisation steps (including those of a resumed checkpoint).
    :param int batch_size: sequences per step (capped at ``N``; drawn without replacement per step).
    :param int seed: random seed.
    :param float lr: learning rate of every group not in ``lrs``.
    :param dict lrs: learning rate per group, keys among ``"encoder"``, ``"decoder"``, ``"transition"``,
        ``"initial"``, ``"denoiser"``, ``"other"``.
    :param tuple kl_schedule: ``(kind, warmup_steps, lambda_end[, lambda_start])`` with kind
        ``"linear"``, ``"cosine"`` or None; None means :math:`\lambda = 1` throughout.
    :param float clip_norm: maximum global gradient norm (None: no clipping).
    :param float ema_decay: sets ``model.ema_decay`` if the model has one (None keeps the model's).
    :param str checkpoint: path of a checkpoint file (None: no checkpointing).
    :param int checkpoint_every: save every this many steps (default: only at the end).
    :param bool resume: continue from ``checkpoint`` if the file exists.
    :param bool progress: show a tqdm progress bar with the running loss.
    :param torch.Tensor mask: optional observation mask ``(N, T, C)`` or ``(N, T)``.
    :param torch.Tensor covariates: optional covariates ``(N, T, p)``.
    :param int num_particles: ELBO particles per step.
    :param float lr_decay: if given, learning rates follow a cosine from their base value to
        ``lr_decay`` times it at ``num_steps`` (so resuming with another ``num_steps`` changes it).
    :param tuple betas: Adam's betas.
    :param callable callback: called as ``callback(step, loss)`` after every step.
    :returns: the loss history, a list of floats of length ``num_steps``.
    """
    if not (hasattr(model, "model") and hasattr(model, "guide")):
        raise ValueError("model must have model(x, mask, covariates) and guide(x, mask, covariates) methods")
    _check_data(x, mask, covariates)
    num_steps = _check_positive_int("num_steps", num_steps, allow_zero=True)
    batch_size = min(_check_positive_int("batch_size", batch_size), x.shape[0])
    num_particles = _check_positive_int("num_particles", num_particles)
    schedule = check_kl_schedule(kl_schedule)
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive or None, got {clip_norm}")
    if checkpoint_every is not None:
        checkpoint_every = _check_positive_int("checkpoint_every", checkpoint_every)
    if lr_decay is not None and not 0 <= lr_decay <= 1:
        raise ValueError(f"lr_decay must be in [0, 1] or None, got {lr_decay}")
    if ema_decay is not None:
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if hasattr(model, "ema_decay"):
            model.ema_decay = float(ema_decay)

    pyro.set_rng_seed(seed)
    batches = torch.Generator().manual_seed(seed)
    optimizer = None
    losses, start = [], 0
    if checkpoint is not None and resume and os.path.exists(checkpoint):
        state = load_checkpoint(checkpoint)
        if state["config"] != {"seed": seed, "batch_size": batch_size}:
            warnings.warn(f"resuming {checkpoint} with different settings ({state['config']}); the run will not "
                          f"match an uninterrupted one", stacklevel=2)
        model.load_state_dict(state["model"])
        optimizer = _build_optimizer(model, lr, lrs, betas)
        optimizer.load_state_dict(state["optimizer"])
        set_rng_states(state["rng"], {"batches": batches})
        losses, start = list(state["losses"]), int(state["step"])
    else:
        if hasattr(model, "initialize"):
            model.initialize(x, mask=mask, covariates=covariates)
        optimizer = _build_optimizer(model, lr, lrs, betas)

    params = [p for group in optimizer.param_groups for p in group["params"]]
    sites = tuple(getattr(model, "latent_sites", ()))
    elbo = Trace_ELBO(num_particles=num_particles)
    N = x.shape[0]

    def save(step):
        save_checkpoint(checkpoint, {
            "step": step, "losses": losses, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "rng": get_rng_states({"batches": batches}), "config": {"seed": seed, "batch_size": batch_size},
        })

    model.train()
    bar = tqdm(range(start, num_steps), initial=start, total=num_steps, disable=not progress,
               desc=f"fit {type(model).__name__}", leave=False)
    running = None
    for step in bar:
        idx = torch.randperm(N, generator=batches)[:batch_size]
        xb = x[idx]
        mb = None if mask is None else mask[idx]
        cb = None if covariates is None else covariates[idx]
        factor = _lr_factor(step, num_steps, lr_decay)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        weight = kl_weight(step, schedule)
        if hasattr(model, "kl_weight"):
            model.kl_weight = weight
        with scale_sites(sites=sites, scale=weight):
            loss = elbo.differentiable_loss(model.model, model.guide, xb, mask=mb, covariates=cb) / len(idx)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss is not finite at step {step}: {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        optimizer.step()
        if hasattr(model, "on_step"):
            model.on_step(step)
        value = loss.item()
        losses.append(value)
        running = value if running is None else 0.98 * running + 0.02 * value
        if progress and (step % 10 == 0 or step + 1 == num_steps):
            bar.set_postfix(loss=f"{running:.4g}")
        if callback is not None:
            callback(step, value)
        if checkpoint is not None and checkpoint_every is not None and (step + 1) % checkpoint_every == 0:
            save(step + 1)
    bar.close()
    if checkpoint is not None and start < num_steps:
        save(num_steps)
    if hasattr(model, "kl_weight"):
        model.kl_weight = kl_weight(num_steps, schedule)
    model.eval()
    return losses
