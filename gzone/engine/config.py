"""Study configurations: errors that name a field, checks of field values, the config groups that
studies share by inheritance, presets and the identity of a results directory.

* :class:`ConfigError`: a bad value of one field, worded with the field's name
  (``dim must be at least 1, got 0``) and renderable as a command-line flag (``--dim ...``).
* :func:`check_types` (every field against its annotation) and the value checks
  (:func:`check_positive`, :func:`check_at_least`, :func:`check_choice`, :func:`check_range`,
  :func:`check_alphas`, :func:`check_fraction`, :func:`check_dims`).
* Shared groups: :class:`ModelDataConfig` (a model on one split of a dataset: the curvature
  studies) and :class:`TrainTestConfig` (a model trained on a train split, tested on the test
  split: the training studies), with :func:`check_model_data` / :func:`check_train_test`.
* :func:`make_config` (a study's preset plus overrides) and :func:`identity` (what a results
  directory is tied to: the study's name and its config minus the growable fields).

Every field carries ``metadata["help"]`` (one line; the command line shows it) and, where the
library has the list, ``metadata["choices"]``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import gzone
from gzone import data, models

# ----------------------------------------------------------------------------- errors


def cli_flag(name: str) -> str:
    """The command-line spelling of a config field: ``alpha_min`` -> ``--alpha-min``."""
    return "--" + name.replace("_", "-")


class ConfigError(ValueError):
    """A bad value of one config field.

    ``ConfigError("dim", "{name} must be at least 1, got 0")``: the message template names the
    field as ``{name}`` (and a second one, ``other``, as ``{other}``). ``str(error)`` spells them as
    field names; :meth:`render` with any spelling, e.g. the command line's flags.
    """

    def __init__(self, name: str, template: str, other: str | None = None) -> None:
        self.name, self.template, self.other = name, template, other
        super().__init__(self.render())

    def __reduce__(self):
        return type(self), (self.name, self.template, self.other)

    def render(self, flag: str | Callable[[str], str] | None = None) -> str:
        """The message with each field spelled by ``flag``: a callable (name -> spelling), one
        string for ``{name}``, or None (the field names themselves)."""
        if flag is None:
            spell = str
        elif isinstance(flag, str):
            def spell(n, _flag=flag):
                return _flag if n == self.name else n
        else:
            spell = flag
        text = self.template.replace("{name}", spell(self.name))
        return text.replace("{other}", spell(self.other)) if self.other is not None else text

    def for_cli(self, flags: Mapping[str, str] | None = None) -> str:
        """The message with fields as command-line flags: ``flags[name]`` where given, else
        :func:`cli_flag` (``--alpha-min``)."""
        flags = flags or {}
        return self.render(lambda n: flags.get(n, cli_flag(n)))


# ----------------------------------------------------------------------------- field types


@functools.cache
def _field_types(config_cls: type) -> tuple[tuple[str, Any], ...]:
    hints = typing.get_type_hints(config_cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(config_cls))


def field_types(config_cls: type) -> dict[str, Any]:
    """The annotated type of every dataclass field of ``config_cls``."""
    return dict(_field_types(config_cls))


def optional(tp: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, ``(tp, False)`` otherwise; TypeError for other unions."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"unsupported config field type {tp!r}: only X | None unions")
        return rest[0], len(rest) < len(typing.get_args(tp))
    return tp, False


def element(tp: Any) -> Any | None:
    """``X`` of ``tuple[X, ...]``, else None."""
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"unsupported config field type {tp!r}: only tuple[X, ...]")
        return args[0]
    return None


def _is(value: Any, tp: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, tp)


def check_types(config: Any) -> None:
    """Every field of ``config`` holds a value of its annotated type (an int where a float is
    asked is fine; a list where a tuple is asked is not: tuples keep configs hashable)."""
    for name, tp in field_types(type(config)).items():
        value = getattr(config, name)
        base, is_optional = optional(tp)
        if value is None:
            if is_optional:
                continue
            raise ConfigError(name, "{name} must not be none")
        item = element(base)
        if item is None:
            ok = _is(value, base)
        else:
            ok = isinstance(value, tuple) and all(_is(v, item) for v in value)
        if not ok:
            expected = (f"a tuple of {item.__name__}" if item is not None else base.__name__)
            raise ConfigError(name, f"{{name}} must be {expected}, got {value!r}")


def field_help(config_cls: type, name: str) -> str:
    """The one-line help of a field (its own metadata, else that of the nearest base class that
    declares it with help): raises KeyError when no class documents it."""
    for cls in config_cls.__mro__:
        fields = getattr(cls, "__dataclass_fields__", {})
        if name in fields and "help" in fields[name].metadata:
            return fields[name].metadata["help"]
    raise KeyError(f"{config_cls.__name__}.{name} has no help")


def field_choices(config_cls: type, name: str) -> tuple | None:
    """The choices of a field, where the library declares them (as for :func:`field_help`)."""
    for cls in config_cls.__mro__:
        fields = getattr(cls, "__dataclass_fields__", {})
        if name in fields and "help" in fields[name].metadata:
            return fields[name].metadata.get("choices")
    return None


def field(default: Any, help: str, choices: Iterable | None = None, *,  # noqa: A002
          identity: bool | str = True) -> Any:
    """A dataclass field with its one-line ``help`` (and ``choices``) in its metadata.
    ``identity``: whether it is part of a results directory's identity (:func:`identity`) —
    True; False for how, not what, is computed (e.g. a checkpoint cadence); ``"unless-default"``
    for a setting added later whose default is the old behaviour (older directories stay valid)."""
    meta = {"help": help} if choices is None else {"help": help, "choices": tuple(choices)}
    if identity is not True:
        meta["identity"] = identity
    return dataclasses.field(default=default, metadata=meta)


# ----------------------------------------------------------------------------- value checks


def check_positive(config: Any, *names: str) -> None:
    """Each named field is a finite number > 0 (None, an unset optional field, passes)."""
    for name in names:
        value = getattr(config, name)
        if value is None:
            continue
        if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                or not (math.isfinite(value) and value > 0)):
            raise ConfigError(name, f"{{name}} must be a finite number > 0, got {value!r}")


def check_at_least(config: Any, *names: str, minimum: int = 1) -> None:
    """Each named field is an integer ≥ ``minimum`` (None, an unset optional field, passes)."""
    for name in names:
        value = getattr(config, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(name, f"{{name}} must be an integer, got {value!r}")
        if value < minimum:
            raise ConfigError(name, f"{{name}} must be at least {minimum}, got {value!r}")


def check_choice(config: Any, name: str, choices: Iterable[str]) -> None:
    """The named field is one of ``choices``."""
    choices = tuple(choices)
    value = getattr(config, name)
    if value not in choices:
        raise ConfigError(name, f"unknown {{name}} {value!r}; choose one of {', '.join(choices)}")


def check_range(config: Any, low: str, high: str) -> None:
    """Field ``low`` does not exceed field ``high`` (skipped when either is None)."""
    a, b = getattr(config, low), getattr(config, high)
    if a is not None and b is not None and a > b:
        raise ConfigError(low, "{name} exceeds {other}; swap them", other=high)


def check_fraction(config: Any, *names: str) -> None:
    """Each named field is a number in (0, 1]."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
            raise ConfigError(name, f"{{name}} must lie in (0, 1], got {value!r}")


def check_alphas(config: Any, name: str, *, below_one: bool = False) -> None:
    """``config.<name>`` is a non-empty tuple of finite numbers > 0 (with ``below_one``: < 1)."""
    values = getattr(config, name)
    if not values:
        raise ConfigError(name, "{name} is empty: name at least one value")
    for value in values:
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)
                                           and value > 0):
            raise ConfigError(name, f"{{name}} must hold finite numbers > 0, got {value!r}")
        if below_one and value >= 1:
            raise ConfigError(name, f"{{name}} are the small-norm networks: every alpha must be "
                                    f"< 1, got {value!r}")


def check_dims(config: Any, name: str) -> None:
    """``config.<name>`` is a non-empty tuple of integers ≥ 1."""
    values = getattr(config, name)
    if not values or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in values):
        raise ConfigError(name, f"{{name}} must be integers >= 1, got {values!r}")


def parse_dataset(spec: str) -> tuple[str, str | None]:
    """``name`` or ``name:split`` (e.g. ``digits:test``)."""
    name, _, split = spec.partition(":")
    return name, (split or None)


# ----------------------------------------------------------------------------- shared groups


@dataclasses.dataclass(frozen=True)
class ModelDataConfig:
    """A model measured on one split of a dataset, and its numerics (the curvature studies)."""

    model: str = field("mlp", "network", models.MODEL_NAMES)
    widths: tuple[int, ...] = field((300, 100), "hidden widths of mlp, e.g. 300,100")
    dataset: str = field("digits", "dataset", data.DATASETS)
    split: str = field("train", "dataset split", data.SPLITS)
    n_samples: int = field(500, "first N samples of the split")
    init: str = field("kaiming", "initialisation scheme of theta0", tuple(models.INIT_SCHEMES))
    dtype: str = field("float32", "floating-point type (float64 switches JAX to 64-bit)",
                       gzone.DTYPES)
    chunk_size: int | None = field(None, "samples per jit-compiled chunk (none: automatic)")


def check_model_data(config: Any) -> None:
    """Model and dataset names, init scheme, dtype, ``n_samples`` and ``chunk_size`` (integers ≥ 1
    or None)."""
    if config.model not in models.MODEL_NAMES:
        raise ConfigError("model", f"unknown model {config.model!r}; choose {{name}} from "
                                   f"{', '.join(models.MODEL_NAMES)}")
    if parse_dataset(config.dataset)[0] not in data.DATASETS:
        raise ConfigError("dataset", f"unknown dataset {config.dataset!r}; choose {{name}} from "
                                     f"{', '.join(data.DATASETS)}")
    check_choice(config, "init", models.INIT_SCHEMES)
    gzone.check_dtype(config.dtype)
    check_at_least(config, "chunk_size")
    if hasattr(config, "n_samples"):
        check_at_least(config, "n_samples")
    if hasattr(config, "widths"):
        check_dims(config, "widths")


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """How a training study's runs compute and checkpoint (not what they compute)."""

    matmul_precision: str = field("float32", "precision of the training updates' matrix products "
                                  "(tf32: faster on recent NVIDIA GPUs; curvature, sharpness and "
                                  "logged metrics stay float32)", ("float32", "tf32"),
                                  identity="unless-default")
    checkpoint_every: str = field("60s", "checkpoint a batch of runs every N steps (e.g. 500) or "
                                  "N seconds (e.g. 300s), and at its end", identity=False)


def run_settings(config: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`gzone.training.train_grid` that ``config``'s
    :class:`RunSettings` fields set."""
    return {"matmul_precision": config.matmul_precision, "checkpoint_every": config.checkpoint_every}


def check_run_settings(config: Any) -> None:
    """``matmul_precision`` and ``checkpoint_every`` are valid."""
    from gzone import precision
    from gzone.training.loop import checkpoint_cadence

    check_choice(config, "matmul_precision", precision.MATMUL_PRECISIONS)
    try:
        checkpoint_cadence(config.checkpoint_every)
    except ValueError:
        raise ConfigError("checkpoint_every", "{name} must be a number of steps (e.g. 500) or of "
                          f"seconds (e.g. 300s), got {config.checkpoint_every!r}") from None


@dataclasses.dataclass(frozen=True)
class TrainTestConfig(RunSettings):
    """A homogeneous model trained on a dataset's train split and tested on its test split (the
    training studies, Sec. 5 and App. E)."""

    model: str = field("mlp", "network (homogeneous: bias-free ReLU)", models.MODEL_NAMES)
    widths: tuple[int, ...] = field((300, 100), "hidden widths of mlp, e.g. 300,100")
    dataset: str = field("digits", "dataset (its train split is trained on, its test split tested)",
                         data.DATASETS)
    n_train: int | None = field(None, "first N training samples (none: all)")
    n_test: int | None = field(None, "first N test samples (none: all)")
    init: str = field("kaiming", "initialisation scheme of theta0", tuple(models.INIT_SCHEMES))
    dtype: str = field("float32", "floating-point type (float64 switches JAX to 64-bit)",
                       gzone.DTYPES)
    chunk_size: int | None = field(None, "samples per jit-compiled chunk (none: automatic)")


def check_train_test(config: Any) -> None:
    """A known model and a real dataset (not ``gaussian``: it has no test split to hold out), the
    init scheme, dtype and the sample counts."""
    if config.model not in models.MODEL_NAMES:
        raise ConfigError("model", f"unknown model {config.model!r}; choose {{name}} from "
                                   f"{', '.join(models.MODEL_NAMES)}")
    if config.dataset not in data.DATASETS or config.dataset == "gaussian":
        raise ConfigError("dataset", f"unknown dataset {config.dataset!r}; choose {{name}} from "
                                     f"{', '.join(d for d in data.DATASETS if d != 'gaussian')}")
    check_choice(config, "init", models.INIT_SCHEMES)
    gzone.check_dtype(config.dtype)
    check_at_least(config, "n_train", "n_test", "chunk_size")
    check_dims(config, "widths")
    check_run_settings(config)


# ----------------------------------------------------------------------------- presets, identity


def make_config(study: Any, preset: str = "default", **overrides: Any) -> Any:
    """The config of ``study`` (a :class:`~gzone.engine.study.Study`) from its named ``preset``
    plus field ``overrides`` (a None override is kept: it sets an optional field to None). Not
    validated: :func:`gzone.engine.run` validates. One-line errors for an unknown preset or
    field."""
    if preset not in study.presets:
        raise ValueError(f"{study.name} has no preset {preset!r}; choose one of "
                         f"{', '.join(study.presets)}")
    fields = {f.name for f in dataclasses.fields(study.config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{study.name} has no option(s) {', '.join(unknown)}; its options: "
                         f"{', '.join(sorted(fields))}")
    return study.config(**{**study.presets[preset], **overrides})


def identity(study: Any, config: Any) -> dict[str, Any]:
    """What a results directory is tied to: ``{"study": name, **fields}`` over every field of
    the config except the study's growable ones (a grid that may be extended in place), those
    its ``unused(config)`` names (read only in another setting, e.g. the full-space settings
    while ``full_space`` is off), ``widths`` when the model is not ``mlp``, and the fields that
    :func:`field` marks as outside the identity."""
    skip = set(study.growable) | set(study.unused(config) if study.unused else ())
    if getattr(config, "model", "mlp") != "mlp":
        skip.add("widths")
    for f in dataclasses.fields(config):
        rule = f.metadata.get("identity", True)
        if rule is False or (rule == "unless-default" and getattr(config, f.name) == f.default):
            skip.add(f.name)
    out = {k: v for k, v in dataclasses.asdict(config).items() if k not in skip}
    return {"study": study.name, **out}
