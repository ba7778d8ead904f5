"""The small base every study is built on (zone sweeps and the Section-4 studies).

* :class:`ConfigError`: an error about one config field, worded with the parameter's name
  (``dim must be at least 1, got 0``) and renderable as a command-line flag (``--dim ...``).
* Validation helpers (positive numbers, integers with a minimum, choices, min ≤ max ranges) and
  :func:`check_model_data` for the fields every Section-4 config shares (:class:`ModelDataConfig`).
* :func:`identity`: the part of a config a results directory is tied to.
* :class:`Setup` (a model and one dataset, loaded once), :func:`load_data`, :func:`make_setup`,
  and the keys: :func:`seed_state` draws θ0 and the basis R from ``split(key(seed))``; any other
  randomness of a study comes from :func:`stream_key` with one of the named streams below.
* Records: :func:`tag`, :func:`iterate` (optional progress wrapper), :func:`alpha_grid`,
  :func:`open_results`, :func:`load`; numeric helpers :func:`positive_curvature`,
  :func:`mean_entropy`, :func:`spearman`; the :class:`Study` registry entry.

Every study's ``run`` validates its config and builds its setup (data loaded, model run once on
one sample, subspace dimension checked) *before* :func:`open_results` touches the directory, so a
refused run leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

import gzone
from gzone import data, metrics, models, results, subspace

Progress = Callable[[Iterator, int], Iterator]
Record = dict[str, Any]

# ----------------------------------------------------------------------------- random streams

# θ0 and R of a seed come from ``jax.random.split(jax.random.key(seed))`` (:func:`seed_state`);
# every other random draw of a study uses ``stream_key(seed, <stream>)``, one named stream each.
FULL_SPACE_STREAM = 2  # zone: full-space Hutchinson / Lanczos / SLQ probes
EIGVEC_STREAM = 3  # fig10: Lanczos start vector of the first-layer top eigenvector
CURVATURE_BASIS_STREAM = 4  # fig10: orthonormal basis of its projected-curvature points
TRAINING_LABELS_STREAM = 5  # trainability: random labels (drawn once, or per step)


def stream_key(seed: int, stream: int) -> jax.Array:
    """The key of one named random stream of ``seed``: ``fold_in(key(seed), stream)``."""
    return jax.random.fold_in(jax.random.key(seed), stream)


# ----------------------------------------------------------------------------- config errors


def cli_flag(name: str) -> str:
    """The command-line spelling of a config field: ``alpha_min`` -> ``--alpha-min``."""
    return "--" + name.replace("_", "-")


class ConfigError(ValueError):
    """A bad value of one config field.

    ``ConfigError("dim", "{name} must be at least 1, got 0")``: the message template names the
    parameter as ``{name}`` (and a second one, ``other``, as ``{other}``). ``str(error)`` spells
    them as parameter names; :meth:`for_cli` as command-line flags.
    """

    def __init__(self, name: str, template: str, other: str | None = None) -> None:
        self.name, self.template, self.other = name, template, other
        super().__init__(self.render())

    def __reduce__(self):
        return type(self), (self.name, self.template, self.other)

    def render(self, flag: str | Callable[[str], str] | None = None) -> str:
        """The message with each parameter spelled by ``flag``: a callable (name -> spelling),
        one string for ``{name}``, or None (the parameter names themselves)."""
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
        """The message with parameters as command-line flags: ``flags[name]`` where given, else
        :func:`cli_flag` (``--alpha-min``)."""
        flags = flags or {}
        return self.render(lambda n: flags.get(n, cli_flag(n)))


# ----------------------------------------------------------------------------- validation


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


@dataclasses.dataclass(frozen=True)
class ModelDataConfig:
    """Fields shared by every Section-4 study: the model, its data and numerics."""

    model: str = dataclasses.field(default="mlp", metadata={
        "help": "network", "choices": models.MODEL_NAMES})
    widths: tuple[int, ...] = dataclasses.field(default=(300, 100), metadata={
        "help": "hidden widths of mlp, e.g. 300,100"})
    dataset: str = dataclasses.field(default="digits", metadata={
        "help": "dataset", "choices": data.DATASETS})
    split: str = dataclasses.field(default="train", metadata={
        "help": "dataset split", "choices": data.SPLITS})
    n_samples: int = dataclasses.field(default=500, metadata={
        "help": "first N samples of the split"})
    init: str = dataclasses.field(default="kaiming", metadata={
        "help": "initialisation scheme of theta0", "choices": tuple(models.INIT_SCHEMES)})
    dtype: str = dataclasses.field(default="float32", metadata={
        "help": "floating-point type (float64 switches JAX to 64-bit)", "choices": gzone.DTYPES})
    chunk_size: int | None = dataclasses.field(default=None, metadata={
        "help": "samples per jit-compiled chunk (none: automatic)"})

    EXTENDABLE: ClassVar[tuple[str, ...]] = ()  # fields that may grow in an existing results dir
    STUDY: ClassVar[str] = ""  # the study's command-line name (part of its identity)


def check_training_model_data(config: Any) -> None:
    """The ``model`` and ``dataset`` of a training study (Sec. 5, App. E): a known model and a real
    dataset (not ``gaussian``: no test split to hold out)."""
    if config.model not in models.MODEL_NAMES:
        raise ConfigError("model", f"unknown model {config.model!r}; choose {{name}} from "
                                   f"{', '.join(models.MODEL_NAMES)}")
    if config.dataset not in data.DATASETS or config.dataset == "gaussian":
        raise ConfigError("dataset", f"unknown dataset {config.dataset!r}; choose {{name}} from "
                                     f"{', '.join(d for d in data.DATASETS if d != 'gaussian')}")


def check_alphas(config: Any, name: str, *, below_one: bool = False) -> None:
    """``config.<name>`` is a non-empty tuple of finite numbers > 0 (with ``below_one``: < 1)."""
    values = getattr(config, name)
    if not values:
        raise ConfigError(name, "{name} is empty: name at least one alpha")
    for value in values:
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)
                                           and value > 0):
            raise ConfigError(name, f"{{name}} must hold finite numbers > 0, got {value!r}")
        if below_one and value >= 1:
            raise ConfigError(name, f"{{name}} are the small-norm networks: every alpha must be "
                                    f"< 1, got {value!r}")


def preset_config(config_cls: type, presets: Mapping[str, Mapping[str, Any]], preset: str,
                  overrides: Mapping[str, Any], validate: Callable[[Any], None] | None) -> Any:
    """``config_cls`` of the named ``preset`` plus field ``overrides`` (None values ignored),
    checked by ``validate`` when given; one-line errors for an unknown preset or field."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{config_cls.STUDY} has no option(s) {', '.join(unknown)}; options: "
                         f"{', '.join(sorted(fields))}")
    config = config_cls(**{**presets[preset], **{k: v for k, v in overrides.items() if v is not None}})
    if validate is not None:
        validate(config)
    return config


def load_train_test(config: Any, data_dir: str | None) -> tuple[Setup, jax.Array, jax.Array]:
    """A training study's model on its training data (``n_train`` samples) and its test data
    (``n_test``); the model must be homogeneous (the α-scaling rests on it)."""
    train_ds = data.load_dataset(config.dataset, "train", n=config.n_train, data_dir=data_dir)
    test_ds = data.load_dataset(config.dataset, "test", n=config.n_test, data_dir=data_dir)
    setup = make_setup(config, train_ds)
    if setup.degree is None:
        raise ConfigError("model", f"{config.model} is not homogeneous: the study needs one "
                                   f"(bias-free ReLU) {{name}}")
    return setup, jnp.asarray(test_ds.x, setup.dtype), jnp.asarray(test_ds.y, jnp.int32)


def training_params(setup: Setup, init: str, seed: int) -> Any:
    """θ0 of a training study's ``seed``: scheme ``init`` from the first key of
    ``split(key(seed))`` — the θ0 the curvature studies draw for that seed (:func:`seed_state`)."""
    return init_params(setup, init, jax.random.split(jax.random.key(seed))[0])


def check_model_data(config: Any) -> None:
    """The checks of the model and data fields: model and dataset names, init scheme, dtype,
    ``n_samples`` and ``chunk_size`` (integers ≥ 1 or None)."""
    if config.model not in models.MODEL_NAMES:
        raise ConfigError("model", f"unknown model {config.model!r}; choose {{name}} from "
                                   f"{', '.join(models.MODEL_NAMES)}")
    if parse_dataset(config.dataset)[0] not in data.DATASETS:
        raise ConfigError("dataset", f"unknown dataset {config.dataset!r}; choose {{name}} from "
                                     f"{', '.join(data.DATASETS)}")
    check_choice(config, "init", models.INIT_SCHEMES)
    gzone.check_dtype(config.dtype)
    check_at_least(config, "n_samples", "chunk_size")


def identity(config: Any) -> dict[str, Any]:
    """The part of a configuration a results directory is tied to: every dataclass field except
    those in the config's ``EXTENDABLE`` (grid sizes that may grow), ``widths`` dropped unless
    ``model == "mlp"``, plus ``study`` (the config's ``STUDY``).

    A config class may override it with a method ``results_identity(self)`` (the zone sweep does,
    so that the directories it wrote before this base existed stay accepted)."""
    override = getattr(config, "results_identity", None)
    if callable(override):
        return override()
    extendable = getattr(config, "EXTENDABLE", ())
    out = {k: v for k, v in dataclasses.asdict(config).items() if k not in extendable}
    if config.model != "mlp":
        out.pop("widths", None)
    out["study"] = config.STUDY
    return out


# ----------------------------------------------------------------------------- data and model


@dataclasses.dataclass(frozen=True)
class Setup:
    """A model and one dataset, loaded once."""

    model: Any
    x: jax.Array
    y: jax.Array
    num_classes: int
    num_params: int
    dtype: Any
    name: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def degree(self) -> int | None:
        return self.model.homogeneity_degree


def parse_dataset(spec: str) -> tuple[str, str | None]:
    """``name`` or ``name:split`` (e.g. ``digits:test``)."""
    name, _, split = spec.partition(":")
    return name, (split or None)


def load_data(
    spec: str,
    split: str,
    n: int | None,
    *,
    data_dir: str | None,
    balanced: bool = False,
    seed: int = 0,
    shape: tuple[int, ...] | None = None,
    num_classes: int = 10,
) -> data.Dataset:
    """A dataset by spec: the first ``n`` samples, or (``balanced``) ``n // K`` per class drawn
    with ``seed`` and capped by the smallest class ("as many as the data allows"). ``gaussian``
    takes ``shape`` and is balanced by construction."""
    name, spec_split = parse_dataset(spec)
    split = spec_split or split
    if name == "gaussian":
        if shape is None:
            raise ValueError("the gaussian dataset needs an image shape: list a real dataset first")
        return data.load_dataset("gaussian", split, n=n or 1000, seed=seed, shape=tuple(shape),
                                 num_classes=num_classes)
    if not balanced:
        return data.load_dataset(name, split, n=n, data_dir=data_dir)
    full = data.load_dataset(name, split, data_dir=data_dir)
    indices = data.class_indices(full.y, full.num_classes)
    per_class = min(min(len(i) for i in indices), (n or len(full)) // full.num_classes)
    if per_class < 1:
        raise ValueError(f"{spec} has a class with no samples; cannot draw a balanced subset")
    return data.balanced_subset(full, per_class, seed=seed, indices=indices)


def make_setup(config: Any, ds: data.Dataset) -> Setup:
    """Model of ``config`` (``model``, ``widths``, ``dtype``; ``activation`` and ``use_bias`` where
    the config has them) for ``ds``, checked by running it on
    one sample under ``jax.eval_shape`` (shapes only: e.g. LeNet-5 on 8x8 digits fails here)."""
    model = models.make_model(config.model, ds.num_classes, widths=config.widths,
                              activation=getattr(config, "activation", "relu"),
                              use_bias=getattr(config, "use_bias", False))
    dtype = jnp.dtype(config.dtype)
    shapes = jax.eval_shape(lambda: models.init(model, jax.random.key(0), ds.x.shape[1:], dtype=dtype))
    x = jnp.asarray(ds.x, dtype)
    logits = jax.eval_shape(model.apply, shapes, x[:1])
    if logits.shape != (1, ds.num_classes):
        raise ValueError(f"{config.model} gives logits of shape {logits.shape[1:]} for "
                         f"{ds.num_classes} classes")
    return Setup(model, x, jnp.asarray(ds.y, jnp.int32), ds.num_classes,
                 models.num_params(shapes), dtype, ds.name)


def init_params(setup: Setup, init: str, key: jax.Array) -> Any:
    """Parameters θ0 of scheme ``init`` (kaiming, xavier, authors) for ``key``."""
    return models.init(setup.model, key, setup.input_shape, init, setup.dtype)


def seed_state(setup: Setup, seed: int, *, dim: int, basis: str, init: str) -> tuple[Any, jax.Array]:
    """θ0 and a (P, ``dim``) random basis of kind ``basis`` for one seed, from the two keys of
    ``jax.random.split(jax.random.key(seed))`` (θ0 from the first, R from the second)."""
    key_init, key_basis = jax.random.split(jax.random.key(seed))
    params = init_params(setup, init, key_init)
    return params, subspace.random_basis(key_basis, setup.num_params, dim, basis, setup.dtype)


def check_dim(setup: Setup, dim: int, *, name: str = "dim", min_classes: bool = False) -> None:
    """The subspace dimension fits the model (d ≤ P) and, with ``min_classes`` (the random model
    of Sec. 4), is at least the number of classes K."""
    if dim > setup.num_params:
        raise ConfigError(name, f"subspace dimension {{name}}={dim} exceeds the model's "
                                f"P={setup.num_params} parameters; choose a smaller {{name}}")
    if min_classes and dim < setup.num_classes:
        raise ConfigError(name, f"the random model needs d >= K={setup.num_classes}; "
                                f"got {{name}}={dim}")


# ----------------------------------------------------------------------------- records


def tag(study: str, kind: str, record: Record) -> Record:
    """``record`` with its ``study`` and ``kind`` in front."""
    return {"study": study, "kind": kind, **record}


def iterate(todo: Sequence, progress: Progress | None) -> Iterable:
    """``todo``, wrapped by ``progress(iterator, total)`` when given (e.g. a tqdm bar)."""
    return todo if progress is None else progress(iter(todo), len(todo))


class Ticker:
    """A progress bar over ``total`` units of work (e.g. (run, logged step) pairs), advanced as they
    are done (from the logs of a training grid, say); a no-op without ``progress``."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        # iter(): a tqdm bar is iterable, not an iterator
        self.bar: Iterator | None = (None if progress is None
                                     else iter(progress(iter(range(total)), total)))
        self.left = total

    def advance(self, count: int) -> None:
        for _ in range(min(count, self.left) if self.bar is not None else 0):
            next(self.bar, None)
        self.left -= count

    def close(self) -> None:
        self.advance(self.left)
        if self.bar is not None:
            getattr(self.bar, "close", lambda: None)()


def alpha_grid(config: Any) -> list[float]:
    """The α grid: ``np.geomspace(alpha_min, alpha_max, num_points)`` as Python floats."""
    return np.geomspace(config.alpha_min, config.alpha_max, config.num_points).tolist()


def open_results(config: Any, out_dir: str | Path) -> list[Record]:
    """Prepare ``out_dir`` for ``config`` (:func:`identity`) and return the records already there;
    :class:`gzone.results.ConfigMismatchError` when they belong to another configuration."""
    return results.open_results(out_dir, identity(config))


def load(out_dir: str | Path) -> list[Record]:
    """All records of ``out_dir``."""
    return results.load_records(Path(out_dir) / results.RESULTS_FILE)


# ----------------------------------------------------------------------------- numeric helpers


def to_float(x: Any) -> float:
    """A 0-d array (or number) as a Python float."""
    return float(np.asarray(x))


def positive_curvature(matrix: jax.Array) -> float:
    """Tr/‖·‖_F (Eq. 2) of a symmetric matrix; NaN when undefined (zero matrix)."""
    value = metrics.spectrum_summary(matrix)["positive_curvature"]
    return float("nan") if value is None else value


def mean_entropy(p: jax.Array) -> float:
    """Mean softmax entropy (nats) over samples of probabilities ``p`` (N, K)."""
    return to_float(jnp.mean(metrics.softmax_entropy(p)))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation over the pairs where both are finite; NaN with fewer than 3
    such pairs or a constant side."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(a[ok], b[ok]).statistic)


# ----------------------------------------------------------------------------- registry entry


@dataclasses.dataclass(frozen=True)
class Study:
    """One study: its config class, named presets, runner, summary and figure, the validation
    of its config and its required record fields per record ``kind``."""

    name: str
    config: type
    presets: dict[str, dict[str, Any]]
    run: Callable[..., list[Record]]
    summarize: Callable[[list[Record]], dict[str, Any]]
    figure: Callable[..., Any]
    validate: Callable[[Any], None]
    record_fields: dict[str, tuple[str, ...]]
