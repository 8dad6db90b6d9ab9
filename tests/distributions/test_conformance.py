"""Conformance of every pyroseq distribution with Pyro's distribution interface.

In the style of Pyro's own distribution tests: each distribution is a :class:`Fixture` that builds instances of
a requested batch shape around a small exact (Gaussian) or tiny neural denoiser, and every test runs over all
fixtures. Diffusion ``log_prob`` values are stochastic bounds; tests that compare values either re-seed the
global RNG (same shapes draw the same noise) or use the deterministic probability-flow density
(:func:`~pyroseq.distributions.with_density`) where the distribution supports it.
"""

import functools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import TorchDistribution

from pyroseq.diffusion.noise import standard_normal
from pyroseq.distributions import (
    ConditionalDiffusionLikelihood,
    DiffusionLikelihood,
    DiffusionTransition,
    StagedSequence,
    with_density,
)
from pyroseq.models import (
    AutoregressiveGaussianSequence,
    ConditionalDiffusion,
    GaussianAutoregression,
    InitialPrior,
    LatentMarkovSequence,
    WindowEmission,
)
from pyroseq.nn import Combiner

NAN = float("nan")
FAST = {"num_steps": 2, "num_noise_draws": 1}
T, K, N = 3, 3, 4  # sequence length, enumerated values, plate size


@pytest.fixture(autouse=True)
def _validation():
    pyro.enable_validation(True)
    yield
    pyro.enable_validation(True)


def _sigma(sigma, x):
    return sigma.reshape((-1,) + (1,) * (x.dim() - 1))


def gaussian_denoiser(x, sigma, context):
    """Exact denoiser of N(mean, I) with mean the sum of the context leaves (each ``(M,) + event``)."""
    mean = sum(context)
    return mean + (x - mean) / (1 + _sigma(sigma, x) ** 2)


def ar_denoiser(x, sigma, context):
    """Exact denoiser of z_t ~ N(0.5 z_{t-1} + u_t, I) (history ``(M, j, d)``, covariates ``(M, d)``)."""
    history, covariates = context
    mean = 0.5 * history[:, -1] + covariates
    return mean + (x - mean) / (1 + _sigma(sigma, x) ** 2)


def shifted_denoiser(x, sigma, shift):
    """Denoiser of windows ``(M, T, C)`` around a shift ``(M, 1)`` (the packed context)."""
    mean = shift[:, :, None]
    return mean + (x - mean) / (1 + _sigma(sigma, x) ** 2)


def _pack(planes, context):
    return context


@functools.lru_cache(maxsize=None)
def _combiner(dtype, d=2):
    torch.manual_seed(0)
    return Combiner(d, 3, order=1, hidden_dim=4).to(dtype)


@functools.lru_cache(maxsize=None)
def _initial_net(dtype):
    torch.manual_seed(0)
    return InitialPrior(2, order=2, hidden_dim=4).conditional_net.to(dtype)


@functools.lru_cache(maxsize=None)
def _emission(dtype):
    torch.manual_seed(0)
    return ConditionalDiffusion(2, 4, backbone="csdi", covariate_dim=1, observation_planes=False, objective="bound",
                                num_steps=2, ema_decay=0.0, channels=4, num_layers=1, embedding_dim=8,
                                time_embedding_dim=4, channel_embedding_dim=2).to(dtype)


class Fixture:
    """A pyroseq distribution under test.

    :param str name: test id.
    :param callable build: ``build(batch_shape, dtype, validate_args) -> distribution``, its arguments of batch
        shape ``batch_shape``.
    :param callable build_enum: ``build_enum(dtype) -> distribution`` of batch shape ``(K, 1, N)`` whose batch is
        the broadcast of an argument with enumeration dims ``(K, 1, 1)`` and one with a plate dim ``(N,)``, as
        :class:`~pyro.infer.TraceEnum_ELBO` produces.
    :param tuple event_shape: the expected event shape.
    :param list bad_args: ``(argument name, full, build)`` triples: ``build(validate_args=None)`` builds the
        distribution with a bad value of the argument; ``full`` marks the checks that read the whole tensor
        (NaN, mask values), which run only with validation.
    :param callable exact: ``exact(d)``: a copy of ``d`` whose ``log_prob`` is deterministic, or None.
    :param dict xfail: ``{test: reason}`` of known gaps, the test as ``"name"`` or ``"name[param-param]"``
        (strict: a fix makes the test fail until its entry is removed).
    """

    def __init__(self, name, build, build_enum, event_shape, bad_args, exact=None, xfail=None):
        self.name, self.build, self.build_enum = name, build, build_enum
        self.event_shape = torch.Size(event_shape)
        self.bad_args, self.exact = bad_args, exact
        self.xfail = xfail or {}

    def __repr__(self):
        return f"Fixture({self.name})"


def _exact_ode(d):
    return with_density(d, "ode", num_steps=2)


def _as_is(d):
    return d


def _randn(*shape, dtype=None):
    return torch.randn(shape, dtype=dtype)


# -- DiffusionLikelihood: context as two leaves that broadcast ------------------------------------------------------

def _likelihood(batch_shape, dtype=None, validate_args=None, event=(2,), a=None, b=None, **kwargs):
    ce = event if event else (1,)
    a = _randn(*batch_shape, *ce, dtype=dtype) if a is None else a
    b = _randn(*ce, dtype=dtype) if b is None else b
    return DiffusionLikelihood(gaussian_denoiser, event, context=(a, b), context_event_dim=len(ce),
                               validate_args=validate_args, **FAST, **kwargs)


def _likelihood_fixture(event):
    ce = event if event else (1,)
    return Fixture(
        f"DiffusionLikelihood{tuple(event)}",
        functools.partial(_likelihood, event=event),
        lambda dtype=None: _likelihood((), dtype, event=event, a=_randn(K, 1, 1, *ce, dtype=dtype),
                                       b=_randn(N, *ce, dtype=dtype)),
        event,
        bad_args=[
            ("context", True, lambda v=None: _likelihood((N,), validate_args=v, event=event, b=torch.full(ce, NAN))),
            ("context", False, lambda v=None: _likelihood((N,), validate_args=v, event=event,
                                                          b=torch.zeros(N + 1, *ce))),
            ("context", False, lambda v=None: DiffusionLikelihood(gaussian_denoiser, event, batch_shape=(3,),
                                                                  context=torch.zeros(N, *ce), validate_args=v)),
            ("event_shape", False, lambda v=None: DiffusionLikelihood(gaussian_denoiser, (2, 0), validate_args=v)),
            ("num_steps", False, lambda v=None: DiffusionLikelihood(gaussian_denoiser, event, num_steps=0,
                                                                    validate_args=v)),
        ],
        exact=_exact_ode,
    )


# -- ConditionalDiffusionLikelihood: windows with the first step observed, a shift as context -----------------------

def _conditional(batch_shape, dtype=None, validate_args=None, observed=None, context=None, mask=None, target=None):
    if mask is None:
        mask = torch.zeros(T, 2, dtype=torch.bool)
        mask[0] = True
    if observed is None:  # unobserved entries are NaN in data
        observed = torch.where(mask, _randn(*batch_shape, T, 2, dtype=dtype), torch.full((), NAN, dtype=dtype))
    context = _randn(*batch_shape, 1, dtype=dtype) if context is None else context
    return ConditionalDiffusionLikelihood(shifted_denoiser, observed, mask, context=context, context_event_dim=1,
                                          pack_context=_pack, target=target, validate_args=validate_args, **FAST)


CONDITIONAL = Fixture(
    "ConditionalDiffusionLikelihood",
    _conditional,
    lambda dtype=None: _conditional((), dtype, observed=_randn(N, T, 2, dtype=dtype),
                                    context=_randn(K, 1, 1, 1, dtype=dtype)),
    (T, 2),
    bad_args=[
        ("observed", True, lambda v=None: _conditional((N,), validate_args=v, observed=torch.full((N, T, 2), NAN))),
        ("observed", False, lambda v=None: _conditional((N,), validate_args=v,
                                                        observed=torch.zeros(N, T, 2, dtype=int))),
        ("mask", False, lambda v=None: _conditional((N,), validate_args=v, observed=torch.zeros(N, T, 2),
                                                              mask=torch.ones(5, 2, dtype=torch.bool))),
        ("context", True, lambda v=None: _conditional((N,), validate_args=v, context=torch.full((N, 1), NAN))),
        ("context", False, lambda v=None: _conditional((N,), validate_args=v, context=torch.zeros(N + 1, 1))),
        ("target", True, lambda v=None: _conditional((N,), validate_args=v,
                                                     target=torch.ones(T, 2, dtype=torch.bool))),
    ],
)


# -- DiffusionTransition: history and covariates broadcast ------------------------------------------------------------

def _transition(batch_shape, dtype=None, validate_args=None, event_dim=1, history=None, covariates=None, **kwargs):
    d = (2,) if event_dim else ()
    history = _randn(*batch_shape, 2, *d, dtype=dtype) if history is None else history
    covariates = _randn(*batch_shape, d[0] if d else 1, dtype=dtype) if covariates is None else covariates
    return DiffusionTransition(ar_denoiser, history, covariates, event_dim=event_dim, validate_args=validate_args,
                               **FAST, **kwargs)


def _transition_fixture(event_dim):
    d, p = ((2,), 2) if event_dim else ((), 1)
    return Fixture(
        f"DiffusionTransition(event_dim={event_dim})",
        functools.partial(_transition, event_dim=event_dim),
        lambda dtype=None: _transition((), dtype, event_dim=event_dim, history=_randn(N, 2, *d, dtype=dtype),
                                       covariates=_randn(K, 1, 1, p, dtype=dtype), baseline="persistence"),
        d,
        bad_args=[
            ("history", True, lambda v=None: _transition((N,), validate_args=v, event_dim=event_dim,
                                                         history=torch.full((N, 2, *d), NAN))),
            ("history", False, lambda v=None: _transition((N,), validate_args=v, event_dim=event_dim,
                                                          history=torch.zeros(d))),
            ("covariates", True, lambda v=None: _transition((N,), validate_args=v, event_dim=event_dim,
                                                            covariates=torch.full((N, p), NAN))),
            ("covariates", False, lambda v=None: _transition((N,), validate_args=v, event_dim=event_dim,
                                                             covariates=torch.zeros(N + 1, p))),
            ("baseline", False, lambda v=None: _transition((N,), validate_args=v, event_dim=event_dim,
                                                           baseline="linear")),
            ("event_dim", False, lambda v=None: _transition((N,), validate_args=v, event_dim=2)),
        ],
        exact=_exact_ode,
    )


# -- LatentMarkovSequence: a diffusion transition; initial distribution or a fixed history -------------------------

def _sequence(batch_shape, dtype=None, validate_args=None, scalar=False, base_batch=None, covariates=None,
              history=None, initial_event=None):
    base_batch = batch_shape if base_batch is None else base_batch
    p = 1 if scalar else 2
    covariates = _randn(*batch_shape, T, p, dtype=dtype) if covariates is None else covariates
    if scalar:  # forecasting mode: a fixed history of scalar states
        history = _randn(*base_batch, 2, dtype=dtype) if history is None else history
        return LatentMarkovSequence(lambda h, u: DiffusionTransition(ar_denoiser, h, u, event_dim=0, **FAST), T, 2,
                                    history=history, covariates=covariates, event_dim=1, validate_args=validate_args)
    initial = dist.Normal(torch.zeros(base_batch + (1, 2), dtype=dtype), 1.0).to_event(2)
    if initial_event is not None:
        initial = dist.Normal(torch.zeros(initial_event), 1.0).to_event(len(initial_event))
    return LatentMarkovSequence(lambda h, u: DiffusionTransition(ar_denoiser, h, u, **FAST), T, 1, initial=initial,
                                covariates=covariates, validate_args=validate_args)


def _sequence_fixture(scalar):
    p = 1 if scalar else 2
    bad = [
        ("covariates", True, lambda v=None: _sequence((N,), validate_args=v, scalar=scalar,
                                                      covariates=torch.full((N, T, p), NAN))),
        ("covariates", False, lambda v=None: _sequence((N,), validate_args=v, scalar=scalar,
                                                       covariates=torch.zeros(N + 1, T, p))),
        ("covariates", False, lambda v=None: _sequence((N,), validate_args=v, scalar=scalar,
                                                       covariates=torch.zeros(N, T + 1, p))),
        ("order", False, lambda v=None: LatentMarkovSequence(lambda h, u: None, T, 0, history=torch.zeros(N, 1, 2),
                                                             validate_args=v)),
        ("length", False, lambda v=None: LatentMarkovSequence(lambda h, u: None, 1.5, 1,
                                                              history=torch.zeros(N, 1, 2), validate_args=v)),
    ]
    if scalar:
        bad += [("history", True, lambda v=None: _sequence((N,), validate_args=v, scalar=True,
                                                            history=torch.full((N, 2), NAN))),
                ("history", False, lambda v=None: _sequence((N,), validate_args=v, scalar=True,
                                                             history=torch.zeros(N, 3)))]
    else:
        bad += [("initial", False, lambda v=None: _sequence((N,), validate_args=v, initial_event=(2, 2)))]
    return Fixture(
        f"LatentMarkovSequence({'scalar, history' if scalar else 'initial'})",
        functools.partial(_sequence, scalar=scalar),
        lambda dtype=None: _sequence((), dtype, scalar=scalar, base_batch=(N,),
                                     covariates=_randn(K, 1, 1, T, p, dtype=dtype)),
        (T,) if scalar else (T, 2),
        bad_args=bad,
        exact=_exact_ode,
    )


# -- AutoregressiveGaussianSequence -------------------------------------------------------------------------------

def _guide(batch_shape, dtype=None, validate_args=None, scalar=False, summary=None, initial_history=None):
    dtype = dtype or torch.get_default_dtype()
    state = () if scalar else (2,)
    summary = _randn(*batch_shape, T, 3, dtype=dtype) if summary is None else summary
    initial_history = torch.zeros(1, *state, dtype=dtype) if initial_history is None else initial_history
    return AutoregressiveGaussianSequence(_combiner(dtype, 1 if scalar else 2), summary, initial_history,
                                          event_dim=1 if scalar else 2, validate_args=validate_args)


def _guide_fixture(scalar):
    state = () if scalar else (2,)
    return Fixture(
        f"AutoregressiveGaussianSequence({'scalar' if scalar else 'd=2'})",
        functools.partial(_guide, scalar=scalar),
        lambda dtype=None: _guide((), dtype, scalar=scalar, summary=_randn(K, 1, 1, T, 3, dtype=dtype),
                                  initial_history=_randn(N, 1, *state, dtype=dtype)),
        (T,) + state,
        bad_args=[
            ("summary", True, lambda v=None: _guide((N,), validate_args=v, scalar=scalar,
                                                    summary=torch.full((N, T, 3), NAN))),
            ("summary", False, lambda v=None: _guide((N,), validate_args=v, scalar=scalar, summary=torch.zeros(3))),
            ("initial_history", True, lambda v=None: _guide((N,), validate_args=v, scalar=scalar,
                                                            initial_history=torch.full((1, *state), NAN))),
            ("initial_history", False, lambda v=None: _guide((N,), validate_args=v, scalar=scalar,
                                                             initial_history=torch.zeros(N + 1, 1, *state))),
            ("event_dim", False, lambda v=None: AutoregressiveGaussianSequence(
                _combiner(torch.float32), torch.zeros(N, T, 3), torch.zeros(1, 2), event_dim=3, validate_args=v)),
        ],
        exact=_as_is,
    )


# -- StagedSequence: stages of a window, each conditioned on the mean of the previous one ----------------------------

def _stage_denoiser(x, sigma, history):
    """Exact denoiser of stages ``(M, L, C)`` ~ N(history token ``(M, C)``, I)."""
    mean = history[:, None, :]
    return mean + (x - mean) / (1 + _sigma(sigma, x) ** 2)


def _staged(batch_shape, dtype=None, validate_args=None, offset=None, num_stages=2):
    dtype = dtype or torch.get_default_dtype()
    offset = _randn(*batch_shape, 2, dtype=dtype) if offset is None else offset  # the first stage's token

    def stage_fn(history, stages):
        return DiffusionLikelihood(_stage_denoiser, (2, 2), context=history, context_event_dim=1, **FAST)

    def null_fn(batch):
        return offset.expand(batch + offset.shape[-1:]).unsqueeze(-2)

    batch_shape = torch.broadcast_shapes(batch_shape, offset.shape[:-1])
    return StagedSequence(stage_fn, lambda prev: prev.mean(-2), null_fn, num_stages, (2, 2), batch_shape,
                          validate_args=validate_args)


STAGED = Fixture(
    "StagedSequence",
    _staged,
    lambda dtype=None: _staged((N,), dtype, offset=_randn(K, 1, 1, 2, dtype=dtype)),
    (4, 2),
    bad_args=[
        ("num_stages", False, lambda v=None: _staged((N,), validate_args=v, num_stages=0)),
    ],
    exact=_exact_ode,
)


# -- GaussianAutoregression of InitialPrior -------------------------------------------------------------------------

def _initial(batch_shape, dtype=None, validate_args=None, aux=None):
    dtype = dtype or torch.get_default_dtype()
    aux = _randn(*batch_shape, 2, 2, dtype=dtype) if aux is None else aux
    return GaussianAutoregression(_initial_net(dtype), aux, validate_args=validate_args)


INITIAL = Fixture(
    "GaussianAutoregression",
    _initial,
    lambda dtype=None: _initial((), dtype, aux=_randn(K, 1, N, 2, 2, dtype=dtype)),
    (2, 2),
    bad_args=[
        ("aux", True, lambda v=None: _initial((N,), validate_args=v, aux=torch.full((N, 2, 2), NAN))),
        ("aux", False, lambda v=None: _initial((N,), validate_args=v, aux=torch.zeros(2))),
    ],
    exact=_as_is,
)


# -- WindowEmission of LatentDiffusionSSM ------------------------------------------------------------------------

def _window(batch_shape, dtype=None, validate_args=None, z=None):
    dtype = dtype or torch.get_default_dtype()
    z = _randn(*batch_shape, 4, 1, dtype=dtype) if z is None else z
    return WindowEmission(_emission(dtype), z, torch.zeros(2, dtype=dtype), torch.ones(2, dtype=dtype),
                          validate_args=validate_args)


WINDOW = Fixture(
    "WindowEmission",
    _window,
    lambda dtype=None: _window((), dtype, z=_randn(K, 1, N, 4, 1, dtype=dtype)),
    (4, 2),
    bad_args=[
        ("z", True, lambda v=None: _window((N,), validate_args=v, z=torch.full((N, 4, 1), NAN))),
        ("z", False, lambda v=None: _window((N,), validate_args=v, z=torch.zeros(4))),
    ],
)

FIXTURES = [
    _likelihood_fixture((2,)),
    _likelihood_fixture(()),
    CONDITIONAL,
    _transition_fixture(1),
    _transition_fixture(0),
    _sequence_fixture(False),
    _sequence_fixture(True),
    _guide_fixture(False),
    _guide_fixture(True),
    STAGED,
    INITIAL,
    WINDOW,
]


@pytest.fixture(name="fixture", params=FIXTURES, ids=repr)
def _fixture(request):
    fixture = request.param
    for key, reason in fixture.xfail.items():  # "test_name" or "test_name[param-param]"
        name, _, params = key.rstrip("]").partition("[")
        if name == request.node.originalname and all(p in request.node.name for p in params.split("-") if p):
            request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))
    return fixture


def _close(actual, expected):
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=1e-5, atol=1e-5)


def _seeded_log_prob(d, value, seed=1):
    pyro.set_rng_seed(seed)
    return d.log_prob(value)


# -- shapes, support, samples -------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_shape", [(), (N,), (2, N)])
def test_batch_and_event_shapes(fixture, batch_shape):
    d = fixture.build(batch_shape)
    assert d.batch_shape == batch_shape and d.event_shape == fixture.event_shape
    assert d.shape() == batch_shape + fixture.event_shape
    assert d.event_dim == len(fixture.event_shape)


@pytest.mark.parametrize("batch_shape", [(), (N,)])
def test_support(fixture, batch_shape):
    d = fixture.build(batch_shape)
    assert d.support.event_dim == d.event_dim
    assert not d.support.is_discrete
    x = d.sample()
    ok = d.support.check(x)
    assert ok.shape == batch_shape and ok.all()


@pytest.mark.parametrize("sample_shape", [(), (3,), (2, 3)])
@pytest.mark.parametrize("batch_shape", [(), (2,)])
def test_sample_shape(fixture, batch_shape, sample_shape):
    d = fixture.build(batch_shape)
    x = d.sample(sample_shape)
    assert x.shape == sample_shape + batch_shape + fixture.event_shape
    assert torch.isfinite(x).all()
    lp = d.log_prob(x)
    assert lp.shape == sample_shape + batch_shape and torch.isfinite(lp).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_dtype_and_device(fixture, dtype):
    d = fixture.build((2,), dtype)
    x = d.sample((3,))
    assert x.dtype == dtype and x.device.type == "cpu"
    lp = d.log_prob(x)
    assert lp.dtype == dtype and lp.device == x.device


@pytest.mark.parametrize("event_dim", [0, 1])
def test_noise_is_drawn_on_the_distribution_device_and_dtype(monkeypatch, event_dim):
    # The noise of the bound and of the sampler is drawn on the distribution's device with its dtype (the "meta"
    # device stands in for an accelerator: nothing is computed, shapes, dtypes and devices propagate).
    draws = []
    randn = torch.randn

    def recording_randn(*args, **kwargs):
        draws.append((torch.device(kwargs.get("device") or "cpu"), kwargs.get("dtype")))
        return randn(*args, **kwargs)

    monkeypatch.setattr(torch, "randn", recording_randn)
    meta = {"device": "meta", "dtype": torch.float64}
    d = (2,) if event_dim else ()
    history, covariates = torch.empty(N, 2, *d, **meta), torch.empty(N, d[0] if d else 1, **meta)
    trans = DiffusionTransition(ar_denoiser, history, covariates, event_dim=event_dim, validate_args=False, **FAST)
    lp = trans.log_prob(torch.empty(N, *d, **meta))
    x = trans.sample((3,))
    assert lp.device.type == "meta" and lp.dtype == torch.float64 and lp.shape == (N,)
    assert x.device.type == "meta" and x.dtype == torch.float64 and x.shape == (3, N) + d
    assert draws and all(dev.type == "meta" and dtype == torch.float64 for dev, dtype in draws)
    g = torch.Generator().manual_seed(0)  # a seeded generator draws on its own device, then the noise moves
    assert standard_normal((3,), torch.float64, torch.device("meta"), g).device.type == "meta"


def test_unconditional_samples_follow_the_denoiser_parameters():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, x, sigma, context=None):
            return self.scale * x / (1 + _sigma(sigma, x) ** 2)

    x = DiffusionLikelihood(Net().double(), (2,), **FAST).sample((3,))
    assert x.dtype == torch.float64


# -- expand ----------------------------------------------------------------------------------------------------------

def _check_sample_shapes(small, large, exact):
    x = small.sample()
    assert large.log_prob(x).shape == large.batch_shape
    y = large.sample()
    assert y.shape == large.shape()
    assert small.log_prob(y).shape == large.batch_shape
    if exact is not None:
        _close(exact(large).log_prob(x), exact(small).log_prob(x).expand(large.batch_shape))


@pytest.mark.parametrize("sample_shape", [(), (2,), (2, 3)])
@pytest.mark.parametrize("shape_type", [torch.Size, tuple, list])
@pytest.mark.parametrize("default", [False, True])
def test_expand_new_dim(fixture, sample_shape, shape_type, default):
    small = fixture.build((N,))
    new_shape = shape_type(sample_shape + small.batch_shape)
    large = TorchDistribution.expand(small, new_shape) if default else small.expand(new_shape)
    assert large.batch_shape == sample_shape + small.batch_shape
    assert large.event_shape == small.event_shape
    _check_sample_shapes(small, large, fixture.exact)


def test_expand_existing_dim(fixture):
    small = fixture.build((1, N))
    large = small.expand((3, N))
    assert large.batch_shape == (3, N)
    _check_sample_shapes(small, large, fixture.exact)


@pytest.mark.parametrize("sample_shapes", [[(2, 1), (2, 3)], [(2, 1, 1), (2, 1, 3), (2, 5, 3)]])
def test_subsequent_expands_ok(fixture, sample_shapes):
    d = fixture.build((N,))
    original = d.batch_shape
    for shape in sample_shapes:
        n = d.expand(torch.Size(shape) + original)
        assert n.batch_shape == torch.Size(shape) + original
        _check_sample_shapes(d, n, fixture.exact)
        d = n


@pytest.mark.parametrize("initial_shape,proposed_shape", [[(2, 1), (4, 3)], [(2, 4), (2, 2, 1)], [(1, 2, 1), (2, 1)]])
def test_expand_error(fixture, initial_shape, proposed_shape):
    small = fixture.build((N,))
    large = small.expand(torch.Size(initial_shape) + small.batch_shape)
    with pytest.raises((RuntimeError, ValueError)):
        large.expand(torch.Size(proposed_shape) + small.batch_shape)


def test_expand_keeps_validate_args(fixture):
    d = fixture.build((N,), validate_args=False)
    assert not d.expand((2, N))._validate_args


# -- log_prob broadcasting, enumeration dims ----------------------------------------------------------------------

def test_log_prob_broadcasts_enumerated_arguments(fixture):
    d = fixture.build_enum()
    assert d.batch_shape == (K, 1, N)
    value = fixture.build((N,)).sample()  # the data: one value per plate entry
    lp = d.log_prob(value)
    assert lp.shape == (K, 1, N) and torch.isfinite(lp).all()
    assert d.sample().shape == (K, 1, N) + fixture.event_shape
    if fixture.exact is not None:  # each enumerated value scores as the distribution built from its slice
        lp = fixture.exact(d).log_prob(value)
        for k in range(K):
            _close(lp[k], fixture.exact(d.expand((K, 1, N))).log_prob(value)[k])


def test_log_prob_broadcasts_enumerated_values(fixture):
    d = fixture.build((N,))
    value = d.sample((K, 1))  # e.g. values that depend on an enumerated site
    assert value.shape == (K, 1, N) + fixture.event_shape
    assert d.log_prob(value).shape == (K, 1, N)
    assert d.log_prob(value[:, :, :1]).shape == (K, 1, N)  # a value broadcast over the plate


def test_in_plate_with_enumeration(fixture):
    # As a Pyro site inside a plate, with the arguments enumerated (the site's log-density has the enumerated
    # and plate dims only).
    data = fixture.build((N,)).sample()

    def model():
        with pyro.plate("data", N, dim=-1):
            pyro.sample("x", fixture.build_enum(), obs=data)

    tr = pyro.poutine.trace(model).get_trace()
    tr.compute_log_prob()
    assert tr.nodes["x"]["log_prob"].shape == (K, 1, N)


# -- to_event, mask ------------------------------------------------------------------------------------------------

def test_to_event(fixture):
    d = fixture.build((2, N))
    x = d.sample()
    e = d.to_event(1)
    assert e.batch_shape == (2,) and e.event_shape == (N,) + fixture.event_shape
    _close(_seeded_log_prob(e, x), _seeded_log_prob(d, x).sum(-1))
    assert e.sample((3,)).shape == (3, 2, N) + fixture.event_shape


@pytest.mark.parametrize("mask_shape", [(), (N,), (2, N)])
def test_mask(fixture, mask_shape):
    d = fixture.build((2, N))
    x = d.sample()
    mask = (torch.arange(2 * N).reshape(2, N) % 2 == 0)[(0,) * (2 - len(mask_shape))]
    masked = d.mask(mask)
    assert masked.batch_shape == d.batch_shape and masked.event_shape == d.event_shape
    expected = torch.where(mask, _seeded_log_prob(d, x), torch.zeros(()))
    _close(_seeded_log_prob(masked, x), expected)
    assert (d.mask(False).log_prob(x) == 0).all()


# -- validation -----------------------------------------------------------------------------------------------------

def test_validation_errors(fixture):
    for name, _, build in fixture.bad_args:
        with pytest.raises(ValueError, match=name):
            build()


@pytest.mark.parametrize("validate_args", [None, True, False])
def test_validation_follows_pyro_switch(fixture, validate_args):
    # Checks that read whole tensors (NaN, mask values) run only when validation is on: Pyro's global switch,
    # overridden by validate_args. Shape errors are always raised.
    for name, full, build in fixture.bad_args:
        with pyro.validation_enabled(False):
            if full and not validate_args:
                build(validate_args)
            else:
                with pytest.raises(ValueError, match=name):
                    build(validate_args)
        if full and validate_args is False:
            build(validate_args)  # also with the global switch on


def test_value_errors(fixture):
    d = fixture.build((N,))
    x = d.sample()
    with pytest.raises(ValueError, match="value"):
        d.log_prob(torch.zeros(N, *fixture.event_shape, 5))  # wrong event shape
    with pytest.raises(ValueError, match="value"):
        d.log_prob(torch.zeros(N + 1, *fixture.event_shape))  # batch does not broadcast
    with pytest.raises(ValueError, match="value"):
        d.log_prob(torch.full_like(x, NAN))
    with pyro.validation_enabled(False):  # the NaN check reads the whole value: only under validation
        assert fixture.build((N,)).log_prob(torch.full_like(x, NAN)).shape == (N,)


def test_forgotten_squeeze_is_caught(fixture):
    # A value with an extra trailing batch dim of size 1 (a squeeze forgotten, e.g. a (N, 1) value for scalar
    # events) would broadcast to (N, N) log-densities: a ValueError under validation.
    d = fixture.build((N,))
    value = d.sample().unsqueeze(-len(fixture.event_shape) - 1)
    with pytest.raises(ValueError, match="squeeze"):
        d.log_prob(value)
    with pyro.validation_enabled(False):
        assert fixture.build((N,)).log_prob(value).shape == (N, N)
