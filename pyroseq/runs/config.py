"""Run configuration files of the ``pyroseq`` command line: JSON (or TOML on Python >= 3.11), checked
against a schema so that a typo or a wrong type is reported as one readable :class:`~pyroseq.runs.UsageError`."""

import copy
import json
import math
import os

from ..registry import model_names
from .calendar import check_calendar
from .errors import UsageError

__all__ = ["MODELS", "FORECASTING_MODELS", "GENERATIVE_MODELS", "IMPUTING_MODELS", "SCHEMA", "load_config",
           "validate_config", "example_config", "config_differences", "TRAINING_SECTIONS"]

#: Models that forecast (state-space models with a guide, and the conditional diffusion model, all through
#: :func:`~pyroseq.inference.forecast`), models that generate whole windows, and models that impute missing
#: values (``pyroseq impute``): views of :data:`~pyroseq.registry.MODEL_REGISTRY`.
FORECASTING_MODELS = model_names("forecast")
GENERATIVE_MODELS = model_names("generate")
MODELS = model_names()
IMPUTING_MODELS = model_names("impute")

_INT, _NUM, _STR, _DICT, _LIST = "integer", "number", "string", "object", "list"
_REQUIRED = object()
#: The scores of ``evaluate.metrics`` (generative models).
GENERATION_METRICS = ("context_fid", "correlational", "discriminative", "predictive")

#: section -> key -> (kind, default, lower bound). A section given as a string is a bare value
#: (``"model"``); ``"data"`` may also be given as a string (the dataset name).
SCHEMA = {
    "model": (_STR, _REQUIRED, None),
    "model_kwargs": (_DICT, {}, None),
    "data": {
        "name": (_STR, _REQUIRED, None),       # registry name or path of a CSV file
        "length": (_INT, 24, 2),               # window length T
        "stride": (_INT, 1, 1),                # step between window starts (series data sets)
        "test_fraction": (_NUM, 0.2, 0.0),     # trailing fraction of the windows held out
        "max_windows": (_INT, None, 1),        # cap on the number of windows used (evenly spaced)
        "columns": (_LIST, None, None),        # CSV / series data sets: columns to keep
        "calendar": (_LIST, None, None),       # CSV with dates, forecasting models: calendar covariates
        "kwargs": (_DICT, {}, None),           # further arguments of the registry loader
    },
    "train": {
        "num_steps": (_INT, 500, 0),
        "batch_size": (_INT, 64, 1),
        "lr": (_NUM, 1e-3, 0.0),
        "seed": (_INT, 0, 0),
        "checkpoint_every": (_INT, 100, 1),
        "threads": (_INT, 1, 1),
        "lr_decay": (_NUM, None, 0.0),
        "clip_norm": (_NUM, 10.0, 0.0),
        "kl_schedule": (_LIST, None, None),    # [kind, warmup_steps, lambda_end(, lambda_start)]
        "lrs": (_DICT, None, None),            # per parameter group learning rates
        "ema_decay": (_NUM, 0.999, 0.0),
    },
    "forecast": {
        "horizon": (_INT, 8, 1),
        "num_samples": (_INT, 100, 1),
        "max_series": (_INT, 256, 1),          # held-out windows forecast by `pyroseq forecast`/`evaluate`
    },
    "generate": {
        "num_samples": (_INT, 1000, 1),
        "length": (_INT, None, 1),             # default: the training window length
    },
    "evaluate": {
        "num_samples": (_INT, 1000, 2),        # generated windows scored (generative models)
        "max_real": (_INT, 2000, 2),           # real windows scored against them
        "repeats": (_INT, 1, 1),
        "metrics": (_LIST, list(GENERATION_METRICS), None),
        "ts2vec_iterations": (_INT, 100, 1),
        "disc_iterations": (_INT, 300, 1),
        "pred_iterations": (_INT, 300, 1),
        "seed": (_INT, 0, 0),
    },
}

def _check_value(where, kind, value, low):
    ok = {
        _INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
        _NUM: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        _STR: lambda v: isinstance(v, str) and v != "",
        _DICT: lambda v: isinstance(v, dict),
        _LIST: lambda v: isinstance(v, (list, tuple)),
    }[kind](value)
    if not ok:
        try:
            got = json.dumps(value)
        except (TypeError, ValueError):
            got = repr(value)
        raise UsageError(f"config: {where} must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}, got {got}")
    if low is not None and value < low:
        raise UsageError(f"config: {where} must be >= {low}, got {value}")
    return list(value) if kind == _LIST else value


def _filled(where, spec, value):
    """``value`` checked against its ``(kind, default, lower bound)`` spec, or the default if it is _REQUIRED
    (not given); ``where`` is the key in messages (a top-level key is quoted)."""
    kind, default, low = spec
    if value is not _REQUIRED:
        return _check_value(where, kind, value, low)
    if default is _REQUIRED:
        raise UsageError(f"config: missing required key {where if '.' in where else repr(where)}")
    return copy.deepcopy(default)


def _closest(name, options):
    import difflib

    match = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def validate_config(config):
    """Check a run configuration and fill in the defaults.

    Top-level keys: ``model`` (one of :data:`MODELS`), ``model_kwargs`` (passed to the model's
    constructor), ``data`` (a dataset name, or an object with the keys of ``SCHEMA["data"]``), and the
    optional sections ``train``, ``forecast``, ``generate`` and ``evaluate`` (keys and defaults in
    :data:`SCHEMA`).

    :param dict config: the parsed configuration.
    :returns: a new, complete configuration dict (every section present, defaults filled in).
    :raises UsageError: naming the offending key for unknown keys, missing required keys, wrong types and
        out-of-range values.
    """
    if not isinstance(config, dict):
        raise UsageError(f"config: the top level must be an object (a dict), got {type(config).__name__}")
    unknown = [k for k in config if k not in SCHEMA]
    if unknown:
        raise UsageError(f"config: unknown key {unknown[0]!r}{_closest(unknown[0], SCHEMA)}; allowed keys: "
                         f"{', '.join(SCHEMA)}")
    out = {}
    for section, spec in SCHEMA.items():
        value = copy.deepcopy(config[section]) if section in config else _REQUIRED
        if isinstance(spec, tuple):
            out[section] = _filled(section, spec, value)
            continue
        if value is _REQUIRED:
            value = {}
        if section == "data" and isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict):
            raise UsageError(f"config: {section} must be an object (a dict), got {value!r}")
        unknown = [k for k in value if k not in spec]
        if unknown:
            raise UsageError(f"config: unknown key {section}.{unknown[0]}{_closest(unknown[0], spec)}; allowed: "
                             f"{', '.join(spec)}")
        out[section] = {key: _filled(f"{section}.{key}", entry, _REQUIRED if value.get(key) is None else value[key])
                        for key, entry in spec.items()}  # a null value of a section key means its default
    out["model"] = out["model"].lower()
    if out["model"] not in MODELS:
        raise UsageError(f"config: unknown model {config['model']!r}{_closest(out['model'], MODELS)}; "
                         f"choose one of {', '.join(MODELS)}")
    if not 0 <= out["data"]["test_fraction"] < 1:
        raise UsageError(f"config: data.test_fraction must be in [0, 1), got {out['data']['test_fraction']}")
    if out["train"]["lr"] <= 0:
        raise UsageError(f"config: train.lr must be positive, got {out['train']['lr']}")
    if not 0 <= out["train"]["ema_decay"] < 1:
        raise UsageError(f"config: train.ema_decay must be in [0, 1), got {out['train']['ema_decay']}")
    bad = [m for m in out["evaluate"]["metrics"] if m not in GENERATION_METRICS]
    if bad:
        raise UsageError(f"config: evaluate.metrics has unknown metric {bad[0]!r}; choose among "
                         f"{', '.join(GENERATION_METRICS)}")
    if out["model"] in FORECASTING_MODELS and out["forecast"]["horizon"] >= out["data"]["length"]:
        raise UsageError(f"config: forecast.horizon ({out['forecast']['horizon']}) must be smaller than "
                         f"data.length ({out['data']['length']}): held-out windows are split into history "
                         f"and future")
    if out["data"]["calendar"] is not None:
        out["data"]["calendar"] = check_calendar(out["data"]["calendar"]) or None
        if out["data"]["calendar"] and out["model"] not in FORECASTING_MODELS:
            raise UsageError(f"config: data.calendar (calendar covariates) is for the forecasting models "
                             f"({', '.join(FORECASTING_MODELS)}), not {out['model']!r}")
    _check_train(out["train"])
    for key in ("lrs", "kl_schedule"):
        if out["train"][key] is None:
            del out["train"][key]
    return out


def _check_train(train):
    """Settings :func:`~pyroseq.inference.fit` would reject only after the run directory is set up."""
    from ..inference.fit import PARAM_GROUPS
    from ..inference.schedules import check_kl_schedule

    if train["clip_norm"] is not None and train["clip_norm"] <= 0:
        raise UsageError(f"config: train.clip_norm must be positive or null, got {train['clip_norm']}")
    if train["lr_decay"] is not None and not 0 <= train["lr_decay"] <= 1:
        raise UsageError(f"config: train.lr_decay must be in [0, 1] or null, got {train['lr_decay']}")
    if train["kl_schedule"] is not None:
        try:
            check_kl_schedule(tuple(train["kl_schedule"]))
        except (TypeError, ValueError) as e:
            raise UsageError(f"config: train.kl_schedule: {e}") from None
    for group, lr in (train["lrs"] or {}).items():
        if group not in PARAM_GROUPS:
            raise UsageError(f"config: train.lrs has unknown parameter group {group!r}; allowed: "
                             f"{', '.join(PARAM_GROUPS)}")
        _check_value(f"train.lrs.{group}", _NUM, lr, None)
        if lr <= 0:
            raise UsageError(f"config: train.lrs.{group} must be positive, got {lr}")


def load_config(path):
    """Read and validate a configuration file: JSON (``.json``) or TOML (``.toml``, Python >= 3.11).

    :param str path: the file.
    :returns: the validated configuration (see :func:`validate_config`).
    :raises FileNotFoundError: if the file does not exist.
    :raises UsageError: for a syntax error (with its line) or an invalid configuration.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} does not exist")
    with open(path, "rb") as f:
        raw = f.read()
    if path.lower().endswith(".toml"):
        try:
            import tomllib
        except ImportError:
            raise UsageError(f"{path}: TOML configs need Python >= 3.11; use JSON") from None
        try:
            config = tomllib.loads(raw.decode("utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"{path} is not valid TOML: {e}") from None
    else:
        try:
            config = json.loads(raw.decode("utf-8"))
        except json.JSONDecodeError as e:
            raise UsageError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    try:
        return validate_config(config)
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from None


def example_config(model="ddssm"):
    """A small, complete starting configuration for ``model`` (runs in a few minutes on a CPU).

    :param str model: one of :data:`MODELS`.
    :returns: a validated configuration dict.
    """
    # The state-space models learn a bimodal toy set with the same networks and KL warm-up.
    ssm = dict(latent_dim=1, rnn_dim=32, hidden_dim=32)
    bimodal = dict(name="bimodal", length=32, kwargs=dict(num_samples=512))
    warmup = ["linear", 200, 1.0, 0.0]
    diffusion_train = dict(num_steps=500, batch_size=32, lr=1e-3, clip_norm=1.0)
    examples = {
        "dkf": dict(model_kwargs=ssm, data=bimodal,
                    train=dict(num_steps=500, batch_size=64, lr=3e-3, kl_schedule=warmup)),
        "ddssm": dict(model_kwargs=dict(ssm, denoiser_dim=48, baseline="persistence", num_steps=8), data=bimodal,
                      train=dict(num_steps=500, batch_size=64, lr=3e-3, kl_schedule=warmup)),
        "dimts": dict(model_kwargs=dict(hidden_dim=32, d_state=8, num_steps=10),
                      data=dict(name="sines", length=24, kwargs=dict(num_samples=2000)),
                      train=dict(diffusion_train, batch_size=64), generate=dict(num_samples=500),
                      evaluate=dict(num_samples=500)),
        "stagediff": dict(model_kwargs=dict(stage_length=32, d_model=32, num_steps=10),
                          data=dict(name="etth", length=64, max_windows=4000), train=diffusion_train,
                          generate=dict(num_samples=200, length=128), evaluate=dict(num_samples=500)),
        "conditional": dict(model_kwargs=dict(backbone="csdi", channels=32, num_layers=2, num_steps=10),
                            data=dict(name="sines", length=24, kwargs=dict(num_samples=1000)), train=diffusion_train,
                            forecast=dict(horizon=8, num_samples=50, max_series=64)),
        "latent_diffusion": dict(model_kwargs=dict(ssm, denoiser_dim=48, num_steps=8, backbone="csdi",
                                                   emission_num_steps=10,
                                                   emission_net_kwargs=dict(channels=32, num_layers=2)),
                                 data=bimodal, train=dict(num_steps=500, batch_size=32, lr=3e-3, kl_schedule=warmup),
                                 forecast=dict(horizon=8, num_samples=50, max_series=64)),
    }
    key = str(model).lower()
    if key not in examples:
        raise UsageError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    return validate_config(dict(examples[key], model=key))


#: The sections that define a trained model; a run directory can only continue training with these unchanged.
TRAINING_SECTIONS = ("model", "model_kwargs", "data", "train")


def config_differences(a, b, sections=TRAINING_SECTIONS,
                       ignore=("train.num_steps", "train.threads", "train.checkpoint_every")):
    """Dotted keys whose values differ between two validated configurations.

    :param dict a: a configuration.
    :param dict b: another configuration.
    :param tuple sections: the sections compared (default: those that define the trained model).
    :param tuple ignore: dotted keys to leave out (default: those that do not change the trained model).
    :returns: a sorted list of dotted keys.
    """
    def flat(config):
        items = {}
        for section in set(sections) & set(config):
            value = config[section]
            if isinstance(value, dict) and section != "model_kwargs":
                items.update({f"{section}.{k}": v for k, v in value.items()})
            else:
                items[section] = value
        return items

    fa, fb = flat(a), flat(b)
    return sorted(k for k in set(fa) | set(fb) if k not in ignore and fa.get(k) != fb.get(k))
