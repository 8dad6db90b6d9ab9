"""A window as a product over consecutive stages, each conditioned on the one before (Stage-Diff)."""

import copy

import torch
from pyro.distributions import TorchDistribution, constraints

from .density import with_density
from .util import check_expand_shape, check_value

__all__ = ["StagedSequence"]


class StagedSequence(TorchDistribution):
    r"""A window of ``k`` consecutive stages of ``L`` steps,

    .. math:: p(x) = p(x^{(1)} \mid h_\varnothing) \prod_{m=2}^{k} p(x^{(m)} \mid h(x^{(m-1)})),

    as one distribution with event shape ``(k L, C)``, in the way
    :class:`~pyroseq.models.LatentMarkovSequence` factors a trajectory over time:

    - ``log_prob`` scores all stages with **one** call of ``stage_fn`` (teacher forcing: the history of every
      stage is encoded from the previous stage of the *value*);
    - ``sample`` is sequential: stage ``m`` is sampled given the history encoded from the *sampled* stage
      ``m - 1``, so a model trained on short windows samples windows of any number of stages.

    If the stage distributions are diffusion likelihoods, ``log_prob`` is a stochastic lower bound on
    :math:`\log p(x)` (use this distribution in a model, never in a guide).

    :param callable stage_fn: ``stage_fn(history, stages) -> distribution`` over the stages selected by the
        slice ``stages`` of ``range(k)``, given their history tokens ``history`` of shape
        ``batch + (n,) + history_shape`` (``n`` the number of selected stages; ``batch`` broadcastable with
        ``batch_shape``); the distribution has batch shape ``batch + (n,)`` and event shape ``(L, C)``.
    :param callable encode_fn: ``encode_fn(previous) -> history`` maps stages ``batch + (n, L, C)`` to the
        history tokens of the stages that follow them, ``batch + (n,) + history_shape``.
    :param callable null_fn: ``null_fn(batch) -> history`` gives the tokens ``batch + (1,) + history_shape``
        of a first stage (no history).
    :param int num_stages: number of stages ``k``.
    :param tuple stage_shape: ``(L, C)``.
    :param tuple batch_shape: the batch shape.
    """

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = False

    def __init__(self, stage_fn, encode_fn, null_fn, num_stages, stage_shape, batch_shape=(), validate_args=None):
        if int(num_stages) != num_stages or num_stages < 1:
            raise ValueError(f"num_stages must be a positive integer, got {num_stages!r}")
        stage_shape = torch.Size(stage_shape)
        if len(stage_shape) != 2:
            raise ValueError(f"stage_shape must be (L, C), got {tuple(stage_shape)}")
        self.stage_fn, self.encode_fn, self.null_fn = stage_fn, encode_fn, null_fn
        self.num_stages = int(num_stages)
        self.stage_shape = stage_shape
        L, C = stage_shape
        super().__init__(torch.Size(batch_shape), torch.Size((self.num_stages * L, C)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(StagedSequence, _instance)
        batch_shape = check_expand_shape(self.batch_shape, batch_shape)
        new.stage_fn, new.encode_fn, new.null_fn = self.stage_fn, self.encode_fn, self.null_fn
        new.num_stages, new.stage_shape = self.num_stages, self.stage_shape
        super(StagedSequence, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def with_density(self, density="ode", num_steps=64, exact_trace=None):
        """A copy whose stage distributions score values by ``density`` (see
        :func:`~pyroseq.distributions.with_density`)."""
        new = copy.copy(self)
        stage_fn = self.stage_fn
        new.stage_fn = lambda history, stages: with_density(stage_fn(history, stages), density, num_steps,
                                                            exact_trace)
        return new

    def stages(self, value):
        """Cut windows ``batch + (k L, C)`` into stages ``batch + (k, L, C)``."""
        return value.reshape(value.shape[:-2] + (self.num_stages,) + self.stage_shape)

    def history(self, stages):
        """Teacher-forced history tokens ``batch + (k,) + history_shape`` of stages ``batch + (k, L, C)``."""
        batch = stages.shape[:-3]
        null = self.null_fn(batch)
        if self.num_stages == 1:
            return null
        return torch.cat([null, self.encode_fn(stages[..., :-1, :, :])], len(batch))

    def log_prob(self, value):
        """Teacher-forced log-density: the sum over stages.

        :param torch.Tensor value: windows ``batch + (k L, C)`` (``batch`` broadcastable with ``batch_shape``).
        :returns: a tensor of the broadcast batch shape.
        """
        check_value(value, self.batch_shape, self.event_shape, self._validate_args)
        batch = torch.broadcast_shapes(value.shape[:-2], self.batch_shape)
        stages = self.stages(value.expand(batch + self.event_shape))
        return self.stage_fn(self.history(stages), slice(None)).log_prob(stages).sum(-1)

    def sample(self, sample_shape=torch.Size()):
        """Sample stage by stage; returns ``sample_shape + batch_shape + (k L, C)``."""
        shape = torch.Size(sample_shape) + self.batch_shape
        with torch.no_grad():
            history, out = self.null_fn(shape), []
            for m in range(self.num_stages):
                stage = self.stage_fn(history, slice(m, m + 1)).sample()
                out.append(stage)
                if m + 1 < self.num_stages:
                    history = self.encode_fn(stage)
            return torch.cat(out, -3).reshape(shape + self.event_shape)
