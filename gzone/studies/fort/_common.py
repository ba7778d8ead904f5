"""What the Fort & Scherlis studies share (no study imports a sibling study).

Points are *radii*: r = ‖θ‖ over all parameters, swept as factors c of the Xavier radius
r_X = ‖θ0‖ of each seed's Xavier draw (θ = c·θ0: every weight matrix on its own initialisation
shell scaled by c, zero biases staying zero — the paper's per-layer metric, Sec. 2.1–2.2). Every
record carries ``radius`` (r), ``radius_factor`` (c) and ``xavier_radius`` (r_X). On a random
d-plane the coordinates θ̂ enter as θ = θ0 + M R θ̂ with M the per-layer metric
(:func:`gzone.subspace.layer_metric`, RMS 1) when ``metric`` is on, so the plane Hessian is
RᵀMHMR.

* config groups: :class:`DataConfig` (data and numerics), :class:`NetworkConfig` (+ the network),
  :class:`RadiiConfig` (+ seeds and the radius grid); the presets' pieces;
* the network, θ0 and M of a seed, radius fields; the plane sweep of the curvature studies
  (:func:`plane_points`, :func:`measure_planes`) and full-space Hutchinson moments of MHM;
* drawing helpers (colours, the Xavier-radius marker, bands over seeds).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import gzone
from gzone import curvature, data, hutchinson, metrics, models, subspace
from gzone.engine import setup as engine_setup
from gzone.engine.config import (
    ConfigError,
    RunSettings,
    check_at_least,
    check_choice,
    check_model_data,
    check_positive,
    check_range,
    check_run_settings,
    field,
)
from gzone.engine.setup import Setup
from gzone.engine.study import Context, Point

#: axis labels of the Fort & Scherlis figures (the plane Hessian's positive curvature is
#: ``gzone.plots.PLANE_POSITIVE_CURVATURE_LABEL``)
RADIUS_LABEL = r"radius $r = \|\theta\|$"
POSITIVE_EIGENVALUES_LABEL = "fraction of positive eigenvalues"


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The data, the initialisation scheme and the numerics of a Fort & Scherlis study."""

    dataset: str = field("digits", "dataset (training split)", data.DATASETS)
    n_samples: int | None = field(1000, "first N training samples the loss is measured on (none: all)")
    init: str = field("xavier", "initialisation of theta0 (the paper: xavier)",
                      tuple(models.INIT_SCHEMES))
    dtype: str = field("float32", "floating-point type (float64 switches JAX to 64-bit)",
                       gzone.DTYPES)
    chunk_size: int | None = field(None, "samples per jit-compiled chunk (none: automatic)")


@dataclasses.dataclass(frozen=True)
class NetworkConfig(DataConfig):
    """A Fort & Scherlis network (biases at 0, as theirs; ``use_bias`` off: gzone's homogeneous
    nets) on its data."""

    model: str = field("mlp", "network", models.MODEL_NAMES)
    widths: tuple[int, ...] = field((300, 100), "hidden widths of mlp, e.g. 300,100")
    activation: str = field("relu", "hidden activation", tuple(models.ACTIVATIONS))
    use_bias: bool = field(True, "biases (initialised at 0, as the paper's networks); off: "
                                 "gzone's homogeneous nets")


@dataclasses.dataclass(frozen=True)
class RadiiConfig(NetworkConfig):
    """A network measured at radii c·r_X (a geometric grid of factors) for several seeds."""

    seeds: int = field(3, "seeds (theta0 and basis) per radius")
    radius_min: float = field(0.1, "smallest radius, as a factor of the Xavier radius")
    radius_max: float = field(10.0, "largest radius, as a factor of the Xavier radius")
    num_radii: int = field(13, "radii (geometric grid)")
    metric: bool = field(True, "per-layer metric M on the hyperplane (theta = theta0 + M R theta_hat)")


#: the pieces of the presets: tiny (a 32-16 MLP on 200 digits), the paper's MNIST and CIFAR-10
#: settings (their Fig. 4 architectures), and the CPU scale of MNIST
TINY = {"widths": (32, 16), "n_samples": 200, "seeds": 1, "num_radii": 5}
MNIST = {"model": "mlp", "widths": (200, 200), "dataset": "mnist", "n_samples": 10000}
CIFAR10 = {"model": "mlp", "widths": (200, 200), "dataset": "cifar10", "n_samples": 3000}
MNIST_CPU = {"model": "mlp", "widths": (200, 200), "dataset": "mnist", "n_samples": 1000,
             "seeds": 2, "num_radii": 9}


def validate_network(config: Any) -> None:
    """Model and data names, activation, biases (LeNet-5 is bias-free here)."""
    check_model_data(config)
    check_choice(config, "activation", models.ACTIVATIONS)
    if config.model == "lenet5" and config.use_bias:
        raise ConfigError("use_bias", "lenet5 is bias-free here: set {name} off (--no-use-bias)")


def validate_radii(config: Any) -> None:
    """A network, seeds and the radius grid."""
    validate_network(config)
    check_positive(config, "radius_min", "radius_max")
    check_range(config, "radius_min", "radius_max")
    check_at_least(config, "seeds")
    check_at_least(config, "num_radii", minimum=3)


def radius_factors(config: Any) -> list[float]:
    """The radius grid as factors of the Xavier radius (geometric)."""
    return np.geomspace(config.radius_min, config.radius_max, config.num_radii).tolist()


def setup_for(config: Any, data_dir: str | None) -> Setup:
    """The model of ``config`` on the first ``n_samples`` training samples."""
    ds = engine_setup.load_data(config.dataset, "train", config.n_samples, data_dir=data_dir)
    return engine_setup.make_setup(config, ds)


def load_train_test(config: Any, data_dir: str | None) -> Setup:
    """The setup on ``n_samples`` training samples with the first ``n_test`` test samples."""
    setup = setup_for(config, data_dir)
    test = engine_setup.load_data(config.dataset, "test", config.n_test, data_dir=data_dir)
    return dataclasses.replace(setup, x_test=jnp.asarray(test.x, setup.dtype),
                               y_test=jnp.asarray(test.y, jnp.int32))


def weight_layers(setup: Setup) -> int:
    """L, the number of weight layers (dense and convolution kernels) of the model."""
    shapes = jax.eval_shape(lambda: engine_setup.init_params(setup, "xavier", jax.random.key(0)))
    return sum(1 for path, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]
               if path[-1].key == "kernel")


def seed_state(setup: Setup, config: Any, seed: int, dim: int,
               basis: str | None = None) -> tuple[Any, jax.Array, jax.Array]:
    """θ0 (Xavier by default), the metric M (P,) (ones without ``metric``) and the plane basis
    M R (P, dim) of ``seed`` (θ0 and R from ``split(key(seed))``, as every gzone study)."""
    params, basis_ = engine_setup.seed_state(setup, seed, dim=dim,
                                             basis=basis or getattr(config, "basis", "sparse"),
                                             init=config.init)
    m = (subspace.layer_metric(params, config.init) if config.metric
         else jnp.ones((setup.num_params,), setup.dtype))
    m = jnp.asarray(m, setup.dtype)
    return params, m, m[:, None] * basis_


def flat(params: Any) -> jax.Array:
    """The flat parameter vector (``ravel_pytree`` order)."""
    return jax.flatten_util.ravel_pytree(params)[0]


def scaled(params: Any, factor: float) -> Any:
    """c·θ: the point at ``factor`` times the radius of ``params``, in their dtype
    (:func:`gzone.models.scale`: a NumPy float64 factor would promote float32 parameters to
    float64 whenever JAX runs in 64-bit mode)."""
    return models.scale(params, factor)


def radius_fields(params0: Any, factor: float) -> dict[str, float]:
    """``radius``, ``radius_factor``, ``xavier_radius`` of c·θ0."""
    r0 = float(jnp.linalg.norm(flat(params0)))
    return {"radius": factor * r0, "radius_factor": factor, "xavier_radius": r0}


def batches_for(setup: Setup, config: Any, params: Any, num_tangents: int) -> curvature.Batches:
    """The data laid out once for passes with ``num_tangents`` directions."""
    return curvature.prepare_batches(setup.model.apply, params, setup.x, setup.y,
                                     config.chunk_size, num_tangents)


@dataclasses.dataclass(frozen=True)
class TrainingConfig(NetworkConfig, RunSettings):
    """Full-space, full-batch Adam runs of a network from chosen starts, with a test split."""

    n_test: int | None = field(None, "first N test samples (none: all)")
    train_lr: float = field(1e-3, "Adam learning rate (full batch)")
    train_steps: int = field(300, "full-space Adam steps per run")
    train_log_every: int = field(2, "steps between logs")
    batch_size: int | None = field(16, "runs vmapped together (none: as many as the device's memory holds)")


#: the fields a training run logs
TRAIN_LOG_FIELDS = ("loss", "train_accuracy", "test_accuracy", "parameter_norm")
TRAIN_TINY = {"widths": (32, 16), "n_samples": 200, "n_test": 100, "train_steps": 40,
              "train_log_every": 10, "train_lr": 0.01, "batch_size": 8}


def validate_training(config: Any) -> None:
    """A network and its training runs."""
    validate_network(config)
    check_positive(config, "train_lr")
    check_run_settings(config)
    check_at_least(config, "train_steps", "train_log_every", "batch_size", "n_test")
    if config.train_log_every > config.train_steps:
        raise ConfigError("train_log_every", f"{{name}}={config.train_log_every} exceeds "
                                             f"{{other}}={config.train_steps}", other="train_steps")


def num_logs(steps: int, log_every: int) -> int:
    """Logs of a run of ``steps`` steps logged every ``log_every`` (step 0 and the end included)."""
    return len({*range(0, steps, log_every), steps})


def stack(trees: list[Any]) -> Any:
    """Pytrees stacked along a new leading axis (a grid of runs)."""
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


# ----------------------------------------------------------------------------- the plane sweep


def plane_record(hessian: jax.Array) -> dict[str, Any]:
    """Spectrum summary of one plane Hessian H_d plus its trace and Frobenius norm;
    ``local_convexity`` is the fraction of positive eigenvalues, ``positive_curvature``
    Tr H_d/‖H_d‖_F."""
    summary = metrics.spectrum_summary(hessian)
    eigs = np.asarray([v for v in summary["eigenvalues"] if v is not None], np.float64)
    return {**summary, "trace": float(eigs.sum()), "frobenius_norm": float(np.sqrt((eigs**2).sum()))}


def plane_points(config: Any, kind: str, **extra: Any) -> list[Point]:
    """Every (radius factor, seed) of the sweep, seeds slowest; ``kind`` names the record that
    finishes a point (``plane``, or the study's own per-point record written with its planes)."""
    return [{"kind": kind, **extra, "radius_factor": c, "seed": s} for s in range(config.seeds)
            for c in radius_factors(config)]


def measure_planes(ctx: Context, chunk: list[Point], setup: Setup, config: Any,
                   dims: tuple[int, ...], *, basis: str | None = None,
                   on_point: Callable[..., list[dict[str, Any]]] | None = None,
                   extra: dict[str, Any] | None = None, cache: str = "") -> Iterator[list]:
    """The ``plane`` records of each point (one projection RᵀMHMR onto the seed's largest plane;
    its leading d × d blocks are the planes of every d in ``dims``, nested) and, with
    ``on_point(c, seed, params, m, batches_1, common, planes)``, the point's own records, written
    together (a point is all or nothing)."""
    extra = extra or {}
    for point in chunk:
        c, seed = point["radius_factor"], point["seed"]
        params, m, plane = ctx.cached((cache, "seed", seed), lambda seed=seed: seed_state(
            setup, config, seed, max(dims), basis))
        laid_out = ctx.cached((cache, "batches"), lambda params=params: {
            t: batches_for(setup, config, params, t) for t in {max(dims), 1}})
        common = {"model": config.model, "dataset": config.dataset, **extra,
                  **radius_fields(params, c), "seed": seed, "n_samples": len(setup.x),
                  "num_params": setup.num_params}
        projection = curvature.projected(setup.model.apply, scaled(params, c), plane,
                                         laid_out[max(dims)])
        planes = [{"kind": "plane", **common, "dim": d, "basis": basis or config.basis,
                   "metric": config.metric, "loss": float(projection.loss),
                   "gradient_norm": float(projection.gradient_norm),
                   **plane_record(projection.hessian[:d, :d])} for d in sorted(dims)]
        own = on_point(c, seed, params, m, laid_out[1], common, planes) if on_point else []
        yield planes + own


@functools.cache
def metric_hessian_matvec(apply_fn: Any) -> Callable:
    """``(v, params, batches, T, m) -> M H M v`` with M = diag(m) (jit-compiled, one per
    ``apply_fn``): the Hessian in the metric coordinates θ = M φ of the per-layer metric."""
    hvp = curvature.matvec("hessian", apply_fn)

    def matvec(v, params, batches, temperature, m):
        return m * hvp(m * v, params, batches, temperature)

    return jax.jit(matvec)


def hutchinson_moments(apply_fn: Any, params: Any, batches: curvature.Batches, m: jax.Array,
                       key: jax.Array, num_probes: int) -> dict[str, float]:
    """Full-space Hutchinson estimates of Tr(MHM) and ‖MHM‖_F² with standard errors, from the
    same Rademacher probes (one product each)."""
    size = int(m.shape[0])
    temperature = jnp.asarray(1.0, m.dtype)
    scale, t, f = hutchinson.hutchinson_samples(metric_hessian_matvec(apply_fn), size, params,
                                                batches, temperature, m, key=key,
                                                num_probes=num_probes)
    traces = np.asarray(scale * t, np.float64)
    frobs = np.asarray(scale**2 * f, np.float64)
    n = len(traces)
    return {"trace": float(traces.mean()), "trace_stderr": float(traces.std(ddof=1) / math.sqrt(n)),
            "frobenius_sq": float(frobs.mean()),
            "frobenius_sq_stderr": float(frobs.std(ddof=1) / math.sqrt(n)), "probes": n}


# ----------------------------------------------------------------------------- drawing helpers


def colors(keys: list, name: str = "viridis") -> dict:
    """One colour of the colormap ``name`` per key."""
    import matplotlib as mpl

    cmap = mpl.colormaps[name]
    spots = np.linspace(0.05, 0.85, len(keys)) if len(keys) > 1 else [0.4]
    return {k: cmap(s) for k, s in zip(keys, spots)}


def empty(ax: Any, what: str) -> None:
    """Say on an empty panel that there are no records of ``what``."""
    ax.text(0.5, 0.5, f"no {what} records", transform=ax.transAxes, ha="center", va="center")


def xavier(ax: Any, records: list[dict[str, Any]], *, factor: bool = False) -> None:
    """A dotted vertical line at the Xavier radius (at 1 on a radius-factor axis)."""
    radii = [r["xavier_radius"] for r in records if r.get("xavier_radius") is not None]
    if radii:
        ax.axvline(1.0 if factor else float(np.mean(radii)), color="0.4", ls=":", lw=1,
                   label="Xavier radius")


def curve(records: list[dict[str, Any]], x: str, y: str,
          where: Callable[[dict[str, Any]], bool]) -> tuple[np.ndarray, ...]:
    """x values (mean over seeds of ``x`` per radius factor), and the median, min and max of ``y``."""
    groups: dict[float, list[dict[str, Any]]] = {}
    for r in records:
        if where(r) and r.get(y) is not None:
            groups.setdefault(r["radius_factor"], []).append(r)
    keys = sorted(groups)
    xs = np.array([np.mean([g[x] for g in groups[k]]) for k in keys])
    vals = [np.array([g[y] for g in groups[k]], float) for k in keys]
    return (xs, np.array([np.median(v) for v in vals]), np.array([v.min() for v in vals]),
            np.array([v.max() for v in vals]))


def band(ax: Any, records: list[dict[str, Any]], x: str, y: str, where: Callable, color: Any,
         label: str, **kw: Any) -> None:
    """The median of ``y`` against ``x`` with its min/max band over seeds."""
    xs, med, low, high = curve(records, x, y, where)
    if xs.size:
        ax.plot(xs, med, color=color, label=label, marker="o", ms=3, **kw)
        ax.fill_between(xs, low, high, color=color, alpha=0.15, lw=0)


def mean_of(group: list[dict[str, Any]], name: str) -> float | None:
    """The mean of ``name`` over the records of ``group`` that hold it (None if none do)."""
    values = [g[name] for g in group if g.get(name) is not None]
    return sum(values) / len(values) if values else None


def plane_rows(records: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """Per (``keys``, radius factor, d) of the ``plane`` records, means over seeds: the radius,
    the fraction of positive eigenvalues, Tr H/‖H‖_F (and its prediction, where recorded)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("kind") == "plane":
            groups.setdefault((*(r.get(k) for k in keys), r["radius_factor"], r["dim"]), []).append(r)
    rows = []
    for key, g in sorted(groups.items(), key=lambda i: tuple(str(k) for k in i[0][:len(keys)]) + i[0][len(keys):]):
        row = {**dict(zip(keys, key)), "radius_factor": key[-2], "radius": mean_of(g, "radius"),
               "dim": key[-1], "seeds": len(g), "positive_eigenvalues": mean_of(g, "local_convexity"),
               "trace_over_frobenius": mean_of(g, "positive_curvature")}
        if any("predicted_positive_curvature" in r for r in g):
            row["predicted"] = mean_of(g, "predicted_positive_curvature")
        rows.append(row)
    return rows
