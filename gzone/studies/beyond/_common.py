"""What the zone studies beyond the papers share (issue 22): network variants that break the ICML
paper's homogeneity, their curvature at initialisation under the two probes of the zone — weight
scaling θ → αθ (ICML Sec. 3, every parameter) and softmax temperature T (Sec. 4) — and the
summaries and figure of those sweeps.

Variants (:data:`VARIANTS`) of one architecture (``arch``: an MLP of ``widths`` or LeNet-5):
``plain`` is the papers' homogeneous bias-free ReLU network (:mod:`gzone.models`); the others are
:mod:`gzone.architectures` networks with biases and ReLU unless named otherwise: ``bias``,
``gelu``, ``tanh``, ``layernorm``, ``batchnorm`` (the statistics of the batch, differentiated: the
function full-batch training sees), ``batchnorm-held`` (the same statistics held as constants:
evaluation mode with running averages equal to the data's statistics at θ — what
``gzone.adapters.linen(..., batch_norm="batch").bind(x)`` computes, tested equal; computed here in
the graph so that one compilation serves every α) and ``residual`` (the small pre-activation
:class:`~gzone.architectures.ResidualCNN`). A BatchNorm network is measured on its whole sample
set as one batch (one chunk, no padding: chunking would change its statistics).

A ``zone`` point (variant, probe, value, seed) is θ = α·θ0(seed) at T = 1 (``probe="alpha"``) or
θ0(seed) at T (``probe="temperature"``): the projected Rᵀ H R, Rᵀ G R, Rᵀ H-term R on a random
d-plane (positive curvature, Eq. 2; spectral norms), the full-space ‖G‖₂ and ‖H-term‖₂ (Lanczos;
the zone is ‖G‖₂ > ‖H-term‖₂, Sec. 4; ``lanczos_iters=0``: the d-plane's norms), the loss, the gradient norm and the mean logit norm.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gzone import architectures, curvature, data, lanczos, metrics, models, subspace
from gzone.engine import setup as engine_setup
from gzone.engine.config import (
    ConfigError,
    check_at_least,
    check_choice,
    check_dims,
    check_positive,
    check_range,
    field,
)
from gzone.engine.study import Context, Point
from gzone.engine.summary import number

ARCHS = ("mlp", "lenet5")
PROBES = ("alpha", "temperature")


@dataclasses.dataclass(frozen=True)
class Variant:
    """How a variant departs from the homogeneous network."""

    activation: str = "relu"
    use_bias: bool = True
    norm: str = "none"
    residual: bool = False
    #: BatchNorm statistics held as constants (not differentiated)
    held: bool = False
    description: str = ""


VARIANTS: dict[str, Variant] = {
    "plain": Variant(use_bias=False, description="the papers' bias-free ReLU network (homogeneous)"),
    "bias": Variant(description="ReLU with biases"),
    "gelu": Variant("gelu", description="GELU with biases"),
    "tanh": Variant("tanh", description="tanh with biases"),
    "layernorm": Variant(norm="layer", description="LayerNorm after every hidden layer"),
    "batchnorm": Variant(norm="batch", description="BatchNorm, batch statistics differentiated"),
    "batchnorm-held": Variant(norm="batch", held=True,
                              description="BatchNorm, the batch's statistics held as constants"),
    "residual": Variant(residual=True, description="pre-activation residual CNN"),
}
BATCH_NORM_VARIANTS = tuple(name for name, v in VARIANTS.items() if v.norm == "batch")


# ----------------------------------------------------------------------------- models


def _batch_norm_in_graph(module: nn.BatchNorm, h: jax.Array, held: bool) -> jax.Array:
    """BatchNorm with the statistics of the batch ``h`` (over every axis but the features),
    held as constants (``jax.lax.stop_gradient``) when ``held``."""
    axes = tuple(a for a in range(h.ndim) if a != h.ndim - 1)
    mean, var = jnp.mean(h, axes), jnp.var(h, axes)
    if held:
        mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
    out = (h - mean) * jax.lax.rsqrt(var + module.epsilon)
    if module.use_scale:
        out = out * module.get_variable("params", "scale")
    if module.use_bias:
        out = out + module.get_variable("params", "bias")
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class VariantModel:
    """``apply(variables, x) -> logits`` of one variant (``variables = {"params": ...}``);
    hashed by identity, one per (arch, variant, classes, widths, channels): :func:`variant_model`."""

    module: nn.Module
    variant: Variant
    name: str
    homogeneity_degree: int | None = None
    #: gzone's projected pass takes no input-layer shortcut through these wrappers
    input_layer = None

    def apply(self, variables: Any, x: jax.Array) -> jax.Array:
        params = {"params": variables["params"]}
        if self.variant.norm != "batch":
            return self.module.apply(params, x)

        def intercept(next_fun, args, kwargs, context):
            if context.method_name == "__call__" and isinstance(context.module, nn.BatchNorm):
                return _batch_norm_in_graph(context.module, args[0], self.variant.held)
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(intercept):
            return self.module.apply(params, x)


@functools.cache
def variant_model(arch: str, variant: str, num_classes: int, widths: tuple[int, ...] = (300, 100),
                  channels: int = 8) -> Any:
    """The network of ``variant`` on ``arch`` (``plain``: :func:`gzone.models.make_model`, with
    its homogeneity degree and input-layer shortcut); one object per argument set."""
    v = VARIANTS[variant]
    if variant == "plain":
        return models.make_model("lenet5" if arch == "lenet5" else "mlp", num_classes, widths=widths)
    if v.residual:
        module = architectures.ResidualCNN(num_classes, channels=channels, activation=v.activation,
                                           norm=v.norm, use_bias=v.use_bias)
    elif arch == "lenet5":
        module = architectures.NormLeNet5(num_classes, v.activation, v.use_bias, v.norm)
    else:
        module = architectures.NormMLP((*widths, num_classes), v.activation, v.use_bias, v.norm)
    return VariantModel(module, v, variant)


def init_variables(model: Any, key: jax.Array, input_shape: tuple[int, ...], scheme: str,
                   dtype: Any) -> dict[str, Any]:
    """``{"params": θ0}`` (:func:`gzone.models.init`: ``scheme`` for kernels, zero biases, unit
    normalisation scales; BatchNorm's running statistics dropped: no variant reads them)."""
    module = model.module if isinstance(model, VariantModel) else model
    return {"params": models.init(module, key, input_shape, scheme, dtype)["params"]}


# ----------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class ZoneConfig:
    """Variants of one architecture, their data, and the α and T grids of the zone sweep."""

    arch: str = field("mlp", "architecture of every variant but residual", ARCHS)
    widths: tuple[int, ...] = field((64, 32), "hidden widths of the MLP, e.g. 300,100")
    residual_channels: int = field(8, "channels of the residual CNN")
    variants: tuple[str, ...] = field(("plain", "bias", "layernorm", "batchnorm"),
                                      "network variants, e.g. plain,batchnorm", tuple(VARIANTS))
    dataset: str = field("digits", "dataset (its train split)", data.DATASETS)
    n_samples: int = field(500, "first N training samples (a BatchNorm variant takes them as one batch)")
    init: str = field("kaiming", "initialisation scheme of theta0", tuple(models.INIT_SCHEMES))
    dtype: str = field("float32", "floating-point type (float64 switches JAX to 64-bit)",
                       ("float32", "float64"))
    chunk_size: int | None = field(None, "samples per chunk of the variants without BatchNorm "
                                         "(none: automatic)")
    alpha_min: float = field(0.1, "smallest weight scale alpha")
    alpha_max: float = field(10.0, "largest weight scale alpha")
    num_alphas: int = field(9, "alphas on the log grid")
    temperature_min: float = field(0.01, "smallest softmax temperature T")
    temperature_max: float = field(100.0, "largest softmax temperature T")
    num_temperatures: int = field(9, "temperatures on the log grid")
    dim: int = field(20, "dimension d of the random plane of the projected curvature")
    seeds: int = field(2, "seeds (theta0 and plane of each)")
    lanczos_iters: int = field(20, "Lanczos steps of the full-space ||G||_2 and ||H-term||_2 "
                                   "(0: the zone of the d-plane's norms, as ICML Fig. 2)")


def validate_zone(config: Any) -> None:
    """The checks every zone sweep shares."""
    check_choice(config, "arch", ARCHS)
    if not config.variants or any(v not in VARIANTS for v in config.variants):
        raise ConfigError("variants", f"{{name}} must name variants among {', '.join(VARIANTS)}, "
                                      f"got {config.variants!r}")
    if len(set(config.variants)) != len(config.variants):
        raise ConfigError("variants", "{name} names a variant twice")
    if config.dataset not in data.DATASETS or config.dataset == "gaussian":
        raise ConfigError("dataset", f"unknown dataset {config.dataset!r}; choose {{name}} from "
                                     f"{', '.join(d for d in data.DATASETS if d != 'gaussian')}")
    check_choice(config, "init", models.INIT_SCHEMES)
    check_dims(config, "widths")
    check_at_least(config, "residual_channels", "n_samples", "chunk_size", "num_alphas",
                   "num_temperatures", "dim", "seeds")
    check_at_least(config, "lanczos_iters", minimum=0)
    check_positive(config, "alpha_min", "alpha_max", "temperature_min", "temperature_max")
    check_range(config, "alpha_min", "alpha_max")
    check_range(config, "temperature_min", "temperature_max")


def grid(config: Any, probe: str) -> list[float]:
    """The log grid of ``probe`` (α or T)."""
    if probe == "alpha":
        return np.geomspace(config.alpha_min, config.alpha_max, config.num_alphas).tolist()
    return np.geomspace(config.temperature_min, config.temperature_max,
                        config.num_temperatures).tolist()


@dataclasses.dataclass(frozen=True)
class ZoneSetup:
    """The training samples (and test samples, for a training study) every variant shares."""

    x: jax.Array
    y: jax.Array
    num_classes: int
    dtype: Any
    x_test: jax.Array | None = None
    y_test: jax.Array | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])


def prepare_zone(config: Any, data_dir: str | None, *, n_test: int | None = 0) -> ZoneSetup:
    """The first ``n_samples`` training samples (and ``n_test`` test samples unless 0); every
    variant is built on them once (shapes checked) and ``dim`` must fit its P."""
    dtype = jnp.dtype(config.dtype)
    train = engine_setup.load_data(config.dataset, "train", config.n_samples, data_dir=data_dir)
    test = None if n_test == 0 else engine_setup.load_data(config.dataset, "test", n_test,
                                                           data_dir=data_dir)
    setup = ZoneSetup(jnp.asarray(train.x, dtype), jnp.asarray(train.y, jnp.int32),
                      train.num_classes, dtype,
                      None if test is None else jnp.asarray(test.x, dtype),
                      None if test is None else jnp.asarray(test.y, jnp.int32))
    for name in config.variants:
        model = model_of(config, setup, name)
        try:
            shapes = jax.eval_shape(lambda m=model: init_variables(
                m, jax.random.key(0), setup.input_shape, config.init, dtype))
            logits = jax.eval_shape(model.apply, shapes, setup.x[:2])
        except Exception as error:  # a shape error names the layer: pass it on in one line
            raise ConfigError("variants", f"variant {name} does not fit {config.dataset}'s "
                                          f"{setup.input_shape} inputs: {str(error).splitlines()[0]}"
                              ) from None
        if logits.shape != (2, setup.num_classes):
            raise ConfigError("variants", f"variant {name} gives logits {logits.shape[1:]}")
        size = models.num_params(shapes)
        if config.dim > size:
            raise ConfigError("dim", f"{{name}}={config.dim} exceeds variant {name}'s P={size}")
    return setup


def model_of(config: Any, setup: ZoneSetup, variant: str) -> Any:
    """The network of ``variant`` for ``config`` and the data's classes."""
    return variant_model(config.arch, variant, setup.num_classes, tuple(config.widths),
                         config.residual_channels)


def chunk_size_of(config: Any, variant: str, n: int) -> int | None:
    """One chunk of all ``n`` samples for a BatchNorm variant, else the config's."""
    return n if variant in BATCH_NORM_VARIANTS else config.chunk_size


def seed_state(config: Any, setup: ZoneSetup, variant: str, seed: int) -> tuple[Any, jax.Array]:
    """θ0 and a (P, d) orthonormal basis of ``seed`` for ``variant``: the two keys of
    ``split(key(seed))``, as :func:`gzone.engine.setup.seed_state` draws them."""
    model = model_of(config, setup, variant)
    key_init, key_basis = jax.random.split(jax.random.key(seed))
    variables = init_variables(model, key_init, setup.input_shape, config.init, setup.dtype)
    basis = subspace.random_basis(key_basis, models.num_params(variables), config.dim,
                                  "orthonormal", setup.dtype)
    return variables, basis


# ----------------------------------------------------------------------------- measurement


def zone_points(config: Any) -> list[Point]:
    """Every (variant, probe, value, seed), variant and seed slowest (their state is reused)."""
    return [{"kind": "zone", "variant": v, "probe": probe, "value": value, "seed": s}
            for v in config.variants for s in range(config.seeds) for probe in PROBES
            for value in grid(config, probe)]


def spectral_norm(term: str, apply_fn: Any, variables: Any, batches: curvature.Batches,
                  temperature: float, iters: int) -> float:
    """|largest-magnitude eigenvalue| of ``term`` (Lanczos, ``iters`` steps, clipped to P)."""
    size = models.num_params(variables)
    op = curvature.operator(term, apply_fn, variables, batches, None, temperature)
    res = lanczos.eigsh(op, size, 1, key=jax.random.key(0), num_iters=min(iters, size), which="LM")
    return abs(float(res.eigenvalues[0]))


def measure_point(model: Any, variables: Any, basis: jax.Array, batches: curvature.Batches,
                  temperature: float, iters: int) -> dict[str, Any]:
    """The curvature fields of one zone point (module docstring); NaN/inf flagged."""
    proj = curvature.projected(model.apply, variables, basis, batches, None, temperature)
    out: dict[str, Any] = {"loss": float(proj.loss), "gradient_norm": float(proj.gradient_norm)}
    flags: list[str] = []
    for term in ("hessian", "gterm", "hterm"):
        s = metrics.spectrum_summary(getattr(proj, term))
        out[f"pc_{term}"] = s["positive_curvature"]
        out[f"{term}_norm_projected"] = s["spectral_norm"]
        flags += [f"{term}:{f}" for f in s["flags"]]
    for term in ("gterm", "hterm"):  # iters = 0: the zone of the d-plane (as ICML Fig. 2)
        out[f"{term}_norm"] = (spectral_norm(term, model.apply, variables, batches, temperature, iters)
                               if iters else out[f"{term}_norm_projected"])
    out["zone_space"] = "full" if iters else "projected"
    logits = _logits(model.apply, variables, batches)
    out["logit_norm"] = float(jnp.mean(jnp.linalg.norm(logits, axis=-1)))
    out["in_zone"] = bool(out["gterm_norm"] > out["hterm_norm"])
    bad = [k for k, v in out.items() if isinstance(v, float) and not np.isfinite(v)]
    for k in bad:
        out[k] = None
    out["flags"] = sorted({*flags, *(f"nonfinite_{k}" for k in bad)})
    return out


def _logits(apply_fn: Any, variables: Any, batches: curvature.Batches) -> jax.Array:
    """The logits of the real (unpadded) samples of ``batches``."""
    z = jnp.concatenate([apply_fn(variables, xc) for xc in batches.x])
    return z[np.asarray(batches.w).reshape(-1) > 0]


def measure_zone(ctx: Context, chunk: list[Point]):
    """The ``zone`` record of each point (state per (variant, seed) cached)."""
    config, setup = ctx.config, ctx.setup
    for p in chunk:
        variant, seed = p["variant"], p["seed"]
        model = model_of(config, setup, variant)
        variables, basis = ctx.cached(("seed", variant, seed), lambda v=variant, s=seed: (
            seed_state(config, setup, v, s)))
        batches = ctx.cached(("batches", variant), lambda m=model, v=variant, p0=variables: (
            curvature.prepare_batches(m.apply, p0, setup.x, setup.y,
                                      chunk_size_of(config, v, len(setup.x)), config.dim)))
        alpha, temperature = (p["value"], 1.0) if p["probe"] == "alpha" else (1.0, p["value"])
        fields = measure_point(model, models.scale(variables, alpha), basis, batches, temperature,
                               config.lanczos_iters)
        yield [{**p, "alpha": alpha, "temperature": temperature, "arch": config.arch,
                "dataset": config.dataset, "n_samples": len(setup.x), **fields}]


# ----------------------------------------------------------------------------- summaries

#: the zone's PC(H) peak stands out: at both ends of the grid PC(H) is at most this fraction of
#: it (the level of the ICML sweeps' zone, :data:`gzone.studies.icml._common.sweep.ZONE_FRACTION`)
ZONE_FRACTION = 0.5
#: the window of α (around 1, where the normalisations' ε is negligible) of the logits' degree
DEGREE_WINDOW = (0.1, 10.0)


def curves(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """(variant, probe) -> the grid ``value`` and the medians over seeds of every numeric field."""
    groups: dict[tuple[str, str], dict[float, list[dict[str, Any]]]] = {}
    for r in records:
        if r.get("kind") == "zone":
            groups.setdefault((r["variant"], r["probe"]), {}).setdefault(r["value"], []).append(r)
    out = {}
    for key, by_value in groups.items():
        values = sorted(by_value)
        fields = ("pc_hessian", "pc_gterm", "pc_hterm", "gterm_norm", "hterm_norm", "logit_norm",
                  "loss", "gradient_norm")
        table = {"value": np.asarray(values)}
        for f in fields:
            table[f] = np.asarray([np.nanmedian([number(r.get(f)) for r in by_value[v]])
                                   if any(np.isfinite(number(r.get(f))) for r in by_value[v])
                                   else np.nan for v in values])
        table["in_zone"] = np.asarray([np.mean([bool(r["in_zone"]) for r in by_value[v]]) > 0.5
                                       for v in values])
        out[key] = table
    return out


def zone_shape(values: np.ndarray, pc: np.ndarray, in_zone: np.ndarray) -> dict[str, Any]:
    """Whether a curve shows a Goldilocks zone: PC(H) rises from both ends of the grid to a peak
    strictly inside it (each end at most :data:`ZONE_FRACTION` of the peak) where ‖G‖₂ >
    ‖H-term‖₂ (Sec. 4); with the peak, the ends, the span and the extent of ‖G‖₂ > ‖H-term‖₂."""
    ok = np.isfinite(pc)
    if ok.sum() < 3:
        return {"has_zone": None, "points": int(ok.sum())}
    at = int(np.nanargmax(np.where(ok, pc, -np.inf)))
    peak = float(pc[at])
    ends = [float(pc[ok][0]), float(pc[ok][-1])]
    zone = [float(v) for v, z in zip(values, in_zone) if z]
    has = bool(peak > 0 and 0 < at < len(pc) - 1 and bool(in_zone[at])
               and all(e <= ZONE_FRACTION * peak for e in ends))
    return {"has_zone": has, "pc_peak": peak, "peak_at": float(values[at]), "pc_ends": ends,
            "pc_span": float(np.nanmax(pc) - np.nanmin(pc)),
            "zone": [min(zone), max(zone)] if zone else None}


def logit_degree(values: np.ndarray, logit_norm: np.ndarray,
                 window: tuple[float, float] | None = DEGREE_WINDOW) -> float | None:
    """The slope of log(mean ‖z‖) against log α over the grid points in ``window`` (None: all):
    the degree k of z(αθ) ≈ α^k z(θ) (L for a network homogeneous of degree L)."""
    ok = np.isfinite(logit_norm) & (logit_norm > 0)
    if window is not None:
        ok &= (values >= window[0]) & (values <= window[1])
    if ok.sum() < 2:
        return None
    return float(np.polyfit(np.log(values[ok]), np.log(logit_norm[ok]), 1)[0])


def zone_rows(records: list[dict[str, Any]], variants: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per (variant, probe): the zone's shape (:func:`zone_shape`), PC(H) at α = T = 1,
    and (α probe) the logits' degree around α = 1 and over the whole grid."""
    rows = []
    table = curves(records)
    order = list(variants or VARIANTS)
    for (variant, probe), c in sorted(table.items(), key=lambda i: (order.index(i[0][0])
                                                                   if i[0][0] in order else 99, i[0][1])):
        at_one = np.isclose(c["value"], 1.0)
        row = {"variant": variant, "probe": probe, **zone_shape(c["value"], c["pc_hessian"], c["in_zone"]),
               "pc_at_1": float(c["pc_hessian"][at_one][0]) if at_one.any() else None,
               "g_over_hterm_at_1": float(c["gterm_norm"][at_one][0] / c["hterm_norm"][at_one][0])
               if at_one.any() and c["hterm_norm"][at_one][0] > 0 else None}
        if probe == "alpha":
            row["logit_degree"] = logit_degree(c["value"], c["logit_norm"])
            row["logit_degree_grid"] = logit_degree(c["value"], c["logit_norm"], None)
        rows.append(row)
    return rows


def row_of(rows: list[dict[str, Any]], variant: str, probe: str) -> dict[str, Any] | None:
    """The summary row of (variant, probe), if measured."""
    return next((r for r in rows if r.get("variant") == variant and r.get("probe") == probe), None)


def zone_figure(records: list[dict[str, Any]], *, title: str | None = None, axes: Any = None):
    """PC(H) and ‖G‖₂/‖H-term‖₂ against α (top) and T (bottom), one line per variant (medians
    over seeds; the zone's points, ‖G‖₂ > ‖H-term‖₂, filled)."""
    import matplotlib.pyplot as plt

    from gzone import plots

    table = curves(records)
    fig = None
    if axes is None:
        fig, axes = plt.subplots(2, 2, figsize=(10, 7), squeeze=False)
    variants = list(dict.fromkeys(v for v, _ in table))
    colors = {v: plt.cm.tab10(i % 10) for i, v in enumerate(variants)}
    for i, probe in enumerate(PROBES):
        for (variant, p), c in table.items():
            if p != probe:
                continue
            style = {"color": colors[variant], "label": variant}
            axes[i][0].plot(c["value"], c["pc_hessian"], "-", **style)
            axes[i][0].scatter(c["value"][c["in_zone"]], c["pc_hessian"][c["in_zone"]],
                               color=colors[variant], s=18)
            with np.errstate(all="ignore"):
                axes[i][1].plot(c["value"], c["gterm_norm"] / c["hterm_norm"], "-", **style)
        for ax in axes[i]:
            ax.set_xscale("log")
            ax.set_xlabel(plots.X_LABELS[probe])
        axes[i][0].set_ylabel("positive curvature of H (d-plane)")
        axes[i][0].axhline(0, color="grey", lw=0.5)
        axes[i][1].set_yscale("log")
        low, high = axes[i][1].get_ylim()  # G vanishes under a saturated softmax: show 8 decades
        axes[i][1].set_ylim(max(low, 1e-4), min(high, 1e4))
        axes[i][1].axhline(1, color="grey", lw=0.8, ls="--")
        axes[i][1].set_ylabel(r"$\|G\|_2 / \|H\text{-term}\|_2$")
    axes[0][0].legend(fontsize=8)
    if fig is not None:
        fig.suptitle(title or "the zone under weight scaling and temperature")
        fig.tight_layout()
    return fig
