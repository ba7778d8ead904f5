"""Inside the Goldilocks zone: ICML paper Sec. 4 (Fig. 3, 4 right, 5, 6) and Appendix D (Fig. 10).

Six studies, each a config dataclass, a ``run_<study>(config, out_dir, data_dir=, progress=)`` that
writes resumable JSONL records through :mod:`gzone.results`, a ``<study>_figure(records)`` and a
``summarize_<study>(records)`` of headline numbers. ``STUDIES`` maps the command-line names
(``fig3``, ``fig4-right``, ``fig5-left``, ``fig5-right``, ``fig6``, ``fig10``) to them.

Notation (paper Sec. 4): per sample μ, J_μ R (K, d) are the logit gradients in a random d-dim
subspace (orthonormal R, (P, d)); c_k = E_μ ∇θ z_k(x_μ) are their class means ("logit gradient
means") and e_k^μ the residuals; σ_c², σ_e² are their per-coordinate variances
(:func:`gzone.random_model.logit_gradient_stats`).

* **fig3** — positive curvature Tr/‖·‖_F of the true projected G-term (``curvature.projected``)
  against Eq. (8) with σ's estimated from J R (N, K, d) and the real softmax outputs, across α.
  *σ's at each α vs once.* For a homogeneous bias-free model J(αθ) = α^(L-1) J(θ), so σ_c² and
  σ_e² both scale by α^(2L-2); Eq. (8) is homogeneous of degree 0 in (σ_c², σ_e²) jointly, so
  estimating the σ's at each α (as the paper does) and estimating them once at α = 1 give the same
  prediction. Both are recorded (``predicted_positive_curvature``, ``..._unit``); their
  difference is float rounding (checked in the tests and reported by :func:`summarize_fig3`).
* **fig4-right** — Γ_p^-2 (Eq. 10) against the softmax entropy of 30 logit sets scaled by α, and
  Γ_p^-2 of the batch-averaged matrix (the paper's red curve).
* **fig5-left** — cosine similarity of full-batch loss gradients of one initialisation on
  different balanced datasets, over several initialisations; next to it the random model's
  prediction: with shared orthogonal equal-norm c_k, Eq. (9) gives ∇ℓ_A ∝ Σ_k c_k δ_A,k with
  δ = Q̂ − Q, so cos(∇ℓ_A, ∇ℓ_B) ≈ cos(δ_A, δ_B) (``predicted_cosine``).
* **fig5-right** — gradient norm vs ‖Q̂ − Q‖₂ over class priors Q ~ Uniform(simplex), against
  Eq. (9). The gradient is the full one, so d = P, and σ_c² must be estimated in full space.
  *Derivation.* c_k = (1/N) Σ_μ ∇θ z_k(x_μ) = ∇θ [(1/N) Σ_μ z_k(x_μ)] by linearity, so the (K, P)
  matrix of class means is the Jacobian of the *mean logit vector*: K vector-Jacobian products (one
  vmapped vjp per chunk of samples), not N·K per-sample gradients. Then σ_c² = (1/KP) Σ_k ‖c_k‖²
  (the estimator of ``logit_gradient_stats`` with d = P; biased up by σ_e²/N, negligible for N in
  the thousands). With orthogonal c_k of squared length P σ_c², ‖Σ_k c_k δ_k‖ = √P σ_c ‖δ‖
  (``reading="exact"``); the paper prints P σ_c² ‖δ‖ (the squared norm's factor,
  ``reading="paper"``). Both slopes are compared with the least-squares slope through the
  origin; a third prediction uses the estimated c_k themselves, √(δᵀ C Cᵀ δ) (no orthogonality).
* **fig6** — many Kaiming initialisations (``jax.vmap`` over init keys and bases, chunked over
  seeds): mean softmax entropy, gradient norm, positive curvature of the projected Hessian and
  G-term (d = 50), initial loss and ‖Q̂ − Q‖; Spearman rank correlations.
* **fig10** — Appendix D pre-collapse regime: per-sample softmax entropies vs α (from the α = 1
  logits, z(αθ) = α^L z(θ), in float64), positive curvature vs α, and the top eigenvector of the
  first-layer Hessian block H₁₁ (Lanczos, ``gzone.lanczos.eigsh``; a local power iteration if that
  module is absent), reshaped to (inputs, hidden), averaged |·| over hidden units and shown as an
  image; its top left singular vector is compared with every input image.

Records (JSONL, one per line; every record also has ``study`` and ``flags``) — ``RECORD_FIELDS``
lists the required keys per study and record ``kind``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import scipy.special
import scipy.stats
from jax.flatten_util import ravel_pytree

import gzone
from gzone import (
    curvature,
    data,
    metrics,
    models,
    objective,
    plots,
    random_model,
    results,
    subspace,
)

Progress = Callable[[Iterator, int], Iterator]
Record = dict[str, Any]

# ----------------------------------------------------------------------------- record fields

RECORD_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "fig3": {
        "point": ("seed", "alpha", "dim", "n_samples", "mean_entropy", "gterm_positive_curvature",
                  "hessian_positive_curvature", "predicted_positive_curvature",
                  "predicted_positive_curvature_unit", "predicted_positive_curvature_means", "sigma_c2", "sigma_e2", "gamma_p", "loss"),
    },
    "fig4-right": {
        "set": ("set", "alpha", "entropy", "gamma_p", "gamma_p_inv2"),
        "batch": ("set", "alpha", "entropy", "gamma_p", "gamma_p_inv2"),
    },
    "fig5-left": {
        "dataset": ("seed", "dataset", "n_samples", "gradient_norm", "loss", "q_gap",
                    "mean_entropy"),
        "pair": ("seed", "dataset_a", "dataset_b", "cosine", "predicted_cosine"),
        "skipped": ("dataset", "reason"),
    },
    "fig5-right": {
        "calibration": ("seed", "num_params", "n_pool", "n_subset", "sigma_c2", "class_mean_gram",
                        "slope_exact", "slope_paper"),
        "prior": ("prior", "prior_q", "gradient_norm", "q_gap", "loss", "mean_entropy",
                  "predicted_norm_exact", "predicted_norm_paper", "predicted_norm_means"),
    },
    "fig6": {
        "init": ("seed", "mean_entropy", "gradient_norm", "hessian_positive_curvature",
                 "gterm_positive_curvature", "loss", "q_gap"),
    },
    "fig10": {
        "entropy": ("alpha", "mean_entropy", "uncertain_samples", "top_sample", "top_share",
                    "tracked_entropies"),
        "curvature": ("alpha", "hessian_positive_curvature", "gterm_positive_curvature",
                      "hterm_positive_curvature"),
        "eigvec": ("alpha", "operator", "top_sample", "top_share", "eigenvalue", "residual",
                   "heatmap", "heatmap_signed", "heatmap_shape", "top_sample_cosine",
                   "best_sample", "best_cosine", "median_cosine"),
    },
}


# ----------------------------------------------------------------------------- configurations


@dataclasses.dataclass(frozen=True)
class ModelDataConfig:
    """Fields shared by every study: the model, its data and numerics."""

    model: str = "mlp"
    widths: tuple[int, ...] = (300, 100)  # hidden widths of ``mlp``
    dataset: str = "digits"
    split: str = "train"
    n_samples: int = 500
    init: str = "kaiming"
    dtype: str = "float32"
    chunk_size: int | None = None  # samples per jit-compiled chunk (None: automatic)

    EXTENDABLE: ClassVar[tuple[str, ...]] = ()  # fields that may grow in an existing results dir


@dataclasses.dataclass(frozen=True)
class Fig3Config(ModelDataConfig):
    """Fig. 3: true G-term curvature vs Eq. (8) across α (d-dim subspace, several seeds)."""

    n_samples: int = 300
    widths: tuple[int, ...] = (128, 64)
    dim: int = 50
    seeds: int = 3
    basis: str = "orthonormal"
    alpha_min: float = 1e-2
    alpha_max: float = 1e1
    num_points: int = 10
    unbiased: bool = False  # Bessel/mean corrections of the σ estimates (logit_gradient_stats)

    EXTENDABLE: ClassVar[tuple[str, ...]] = ("seeds", "num_points")


@dataclasses.dataclass(frozen=True)
class Fig4RightConfig(ModelDataConfig):
    """Fig. 4 right: Γ_p^-2 vs softmax entropy of ``n_sets`` logit sets scaled by α."""

    source: str = "model"  # "model": logits of the first n_sets samples; "gaussian": N(0, std²)
    n_sets: int = 30
    seed: int = 0
    logit_std: float = 1.0
    num_classes: int = 10  # only for source="gaussian"
    alpha_min: float = 1e-2
    alpha_max: float = 1e2
    num_points: int = 81


@dataclasses.dataclass(frozen=True)
class Fig5LeftConfig(ModelDataConfig):
    """Fig. 5 left: gradient cosines of one initialisation across balanced datasets."""

    widths: tuple[int, ...] = (128, 64)
    datasets: tuple[str, ...] = ("digits", "digits:test", "gaussian")
    optional_datasets: tuple[str, ...] = ("svhn",)  # skipped with a note when their files are absent
    n_samples: int = 1000  # per dataset, balanced (capped by the smallest class)
    inits: int = 5

    EXTENDABLE: ClassVar[tuple[str, ...]] = ("inits",)


@dataclasses.dataclass(frozen=True)
class Fig5RightConfig(ModelDataConfig):
    """Fig. 5 right: gradient norm vs ‖Q̂ − Q‖ over priors Q ~ Uniform(simplex), Eq. (9)."""

    widths: tuple[int, ...] = (128, 64)
    n_samples: int | None = None  # the pool: first n of the split (None: all of it)
    subset_size: int = 5000  # capped by the smallest class of the pool (noted in the records)
    n_priors: int = 200
    seed: int = 0  # initialisation
    prior_seed: int = 0

    EXTENDABLE: ClassVar[tuple[str, ...]] = ("n_priors",)


@dataclasses.dataclass(frozen=True)
class Fig6Config(ModelDataConfig):
    """Fig. 6: statistics of many Kaiming initialisations on one balanced batch."""

    widths: tuple[int, ...] = (64, 64, 64)
    n_samples: int = 300  # balanced batch
    dim: int = 50
    n_inits: int = 64
    seeds_per_chunk: int = 16
    basis: str = "orthonormal"

    EXTENDABLE: ClassVar[tuple[str, ...]] = ("n_inits",)


@dataclasses.dataclass(frozen=True)
class Fig10Config(ModelDataConfig):
    """Fig. 10 / App. D: per-sample entropies vs α and the first-layer top Hessian eigenvector."""

    n_samples: int = 300
    seed: int = 0
    dim: int = 20
    alpha_min: float = 1.0
    alpha_max: float | None = None  # None: just past the α where the last sample collapses
    num_points: int = 161  # entropy sweep (cheap)
    curvature_points: int = 7  # projected curvature on a coarser grid (0: skip)
    eig_alphas: tuple[float, ...] | None = None  # None: α = 1 and the share levels below
    share_levels: tuple[float, ...] = (0.5, 0.9, 0.99)
    operator: str = "hessian"  # "hessian" (the paper) or "gterm"
    lanczos_iters: int = 30
    track: int = 20  # samples whose entropy curves are stored

    EXTENDABLE: ClassVar[tuple[str, ...]] = ()


# ----------------------------------------------------------------------------- validation


def _check_positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)
                                      and value > 0):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number > 0, got {value!r}")


def validate(config: ModelDataConfig) -> None:
    """Reject bad configurations with one-line messages that name the fix."""
    models.check_model_name(config.model)
    if config.init not in models.INIT_SCHEMES:
        raise ValueError(f"unknown init {config.init!r}; choose one of {sorted(models.INIT_SCHEMES)}")
    gzone.check_dtype(config.dtype)
    _check_positive(config, "n_samples", "chunk_size")
    for name in ("alpha_min", "alpha_max", "logit_std"):
        if hasattr(config, name):
            _check_positive(config, name)
    if getattr(config, "alpha_max", None) is not None and config.alpha_min > config.alpha_max:
        raise ValueError("--alpha-min exceeds --alpha-max; swap them")
    for name in ("seeds", "num_points", "n_sets", "inits", "n_priors", "n_inits", "seeds_per_chunk",
                 "subset_size", "lanczos_iters", "dim"):
        if hasattr(config, name) and int(getattr(config, name)) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}")
    if hasattr(config, "basis") and config.basis not in subspace.BASIS_KINDS:
        raise ValueError(f"unknown basis {config.basis!r}; choose one of {', '.join(subspace.BASIS_KINDS)}")
    if isinstance(config, Fig4RightConfig) and config.source not in ("model", "gaussian"):
        raise ValueError(f"unknown logit source {config.source!r}; choose model or gaussian")
    if isinstance(config, Fig10Config):
        if config.operator not in ("hessian", "gterm"):
            raise ValueError(f"unknown operator {config.operator!r}; choose hessian or gterm")
        if config.eig_alphas is not None:
            for a in config.eig_alphas:
                if not (math.isfinite(a) and a > 0):
                    raise ValueError(f"--eig-alphas must be finite numbers > 0, got {a!r}")
        if any(not 0 < s <= 1 for s in config.share_levels):
            raise ValueError("--share-levels must lie in (0, 1]")


def identity(config: ModelDataConfig) -> dict[str, Any]:
    """The part of a configuration a results directory is tied to (grid sizes may grow)."""
    out = {k: v for k, v in dataclasses.asdict(config).items() if k not in config.EXTENDABLE}
    if config.model != "mlp":
        out.pop("widths", None)
    out["study"] = study_of(config)
    return out


def study_of(config: ModelDataConfig) -> str:
    """The command-line name of a config's study."""
    return {Fig3Config: "fig3", Fig4RightConfig: "fig4-right", Fig5LeftConfig: "fig5-left",
            Fig5RightConfig: "fig5-right", Fig6Config: "fig6", Fig10Config: "fig10"}[type(config)]


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


def _parse_dataset(spec: str) -> tuple[str, str | None]:
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
    name, spec_split = _parse_dataset(spec)
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


def make_setup(config: ModelDataConfig, ds: data.Dataset) -> Setup:
    """Model of ``config`` for ``ds`` (parameter count from shapes only)."""
    model = models.make_model(config.model, ds.num_classes, widths=config.widths)
    dtype = jnp.dtype(config.dtype)
    shapes = jax.eval_shape(lambda: models.init(model, jax.random.key(0), ds.x.shape[1:], dtype=dtype))
    return Setup(model, jnp.asarray(ds.x, dtype), jnp.asarray(ds.y, jnp.int32), ds.num_classes,
                 models.num_params(shapes), dtype, ds.name)


def init_params(setup: Setup, config: ModelDataConfig, key: jax.Array) -> Any:
    """Kaiming (or ``config.init``) parameters θ0 for ``key``."""
    return models.init(setup.model, key, setup.input_shape, config.init, setup.dtype)


def seed_state(setup: Setup, config: Any, seed: int) -> tuple[Any, jax.Array]:
    """θ0 and an orthonormal (P, d) basis of one seed, keys split as in ``zone.seed_state``."""
    key_init, key_basis = jax.random.split(jax.random.key(seed))
    params = init_params(setup, config, key_init)
    basis = subspace.random_basis(key_basis, setup.num_params, config.dim, config.basis, setup.dtype)
    return params, basis


def _check_dim(setup: Setup, dim: int) -> None:
    if dim > setup.num_params:
        raise ValueError(f"subspace dimension d={dim} exceeds the model's P={setup.num_params}")
    if dim < setup.num_classes:
        raise ValueError(f"the random model needs d >= K={setup.num_classes}; got --dim {dim}")


# ----------------------------------------------------------------------------- building blocks


def _chunk_size(apply_fn, params, x, num_tangents: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        chunk_size = curvature.auto_chunk_size(apply_fn, params, x, num_tangents)
    return int(max(1, min(chunk_size, len(x))))


@functools.partial(jax.jit, static_argnums=0)
def _tangent_chunk(apply_fn, params, basis, x):
    flat, unravel = ravel_pytree(params)
    with jax.default_matmul_precision("highest"):

        def column(r):
            return jax.jvp(lambda p: apply_fn(p, x), (params,), (unravel(r),))

        logits, tangents = jax.vmap(column, in_axes=1, out_axes=(None, 0))(basis.astype(flat.dtype))
    return logits, jnp.transpose(tangents, (1, 2, 0))


def logit_tangents(
    apply_fn, params: Any, basis: jax.Array, x: jax.Array, *, chunk_size: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """Logits (N, K) and per-sample logit gradients in the subspace, J_μ R (N, K, d).

    One vmapped ``jax.jvp`` over R's columns per chunk of samples (forward mode only)."""
    cs = _chunk_size(apply_fn, params, x, basis.shape[1], chunk_size)
    xs, _, _ = curvature.padded_chunks(x, None, cs)
    parts = [_tangent_chunk(apply_fn, params, basis, xc) for xc in xs]
    n = len(x)
    return (jnp.concatenate([p[0] for p in parts])[:n], jnp.concatenate([p[1] for p in parts])[:n])


@functools.partial(jax.jit, static_argnums=0)
def _logits_chunk(apply_fn, params, x):
    return apply_fn(params, x)


def logits_of(apply_fn, params: Any, x: jax.Array, *, chunk_size: int = 1024) -> jax.Array:
    """Logits (N, K), forward passes in chunks."""
    cs = int(min(chunk_size, len(x)))
    xs, _, _ = curvature.padded_chunks(x, None, cs)
    return jnp.concatenate([_logits_chunk(apply_fn, params, xc) for xc in xs])[: len(x)]


@functools.partial(jax.jit, static_argnums=0)
def _class_mean_chunk(apply_fn, params, x, w):
    logits, pullback = jax.vjp(lambda p: apply_fn(p, x), params)
    k = logits.shape[-1]
    cotangents = w[None, :, None] * jnp.eye(k, dtype=logits.dtype)[:, None, :]  # (K, n, K)
    (grads,) = jax.vmap(pullback)(cotangents)
    return jax.vmap(lambda g: ravel_pytree(g)[0])(grads)  # (K, P)


def class_mean_logit_gradients(
    apply_fn, params: Any, x: jax.Array, *, chunk_size: int | None = None
) -> jax.Array:
    """Class means c_k = (1/N) Σ_μ ∇θ z_k(x_μ) in full parameter space, (K, P) (Sec. 4).

    By linearity c_k = ∇θ of the mean logit (1/N) Σ_μ z_k(x_μ): one vmapped vjp with the K unit
    cotangents per chunk of samples instead of N·K per-sample gradients."""
    cs = _chunk_size(apply_fn, params, x, 1, chunk_size)
    xs, _, ws = curvature.padded_chunks(x, None, cs)
    return sum(_class_mean_chunk(apply_fn, params, xc, wc) for xc, wc in zip(xs, ws))


def positive_curvature(matrix: jax.Array) -> float:
    """Tr/‖·‖_F (Eq. 2) of a symmetric matrix; NaN when undefined (zero matrix)."""
    value = metrics.spectrum_summary(matrix)["positive_curvature"]
    return float("nan") if value is None else value


def _float(x: Any) -> float:
    return float(np.asarray(x))


def mean_entropy(p: jax.Array) -> float:
    """Mean softmax entropy (nats) over samples."""
    return _float(jnp.mean(metrics.softmax_entropy(p)))


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(a[ok], b[ok]).statistic)


def _iterate(todo: list, progress: Progress | None) -> Iterable:
    return todo if progress is None else progress(iter(todo), len(todo))


def _open(config: ModelDataConfig, out_dir: str | Path) -> list[Record]:
    validate(config)
    return results.open_results(out_dir, identity(config))


def _load(out_dir: str | Path) -> list[Record]:
    return results.load_records(Path(out_dir) / results.RESULTS_FILE)


def _tag(study: str, kind: str, record: Record) -> Record:
    return {"study": study, "kind": kind, **record}


def _alphas(config: Any) -> list[float]:
    return np.geomspace(config.alpha_min, config.alpha_max, config.num_points).tolist()


# ============================================================================ Fig. 3


def fig3_point(
    setup: Setup,
    config: Fig3Config,
    params: Any,
    basis: jax.Array,
    seed: int,
    alpha: float,
    unit_sigmas: tuple[float, float],
) -> Record:
    """True G-term curvature (``curvature.projected``) and Eq. (8) at αθ0 for one seed.

    Eq. (8) uses the softmax outputs at α and σ's estimated from J R at α
    (``predicted_positive_curvature``) or at α = 1 (``..._unit``). A diagnostic between the two:
    ``..._means`` keeps the *estimated* class means c_k (not orthogonal, unequal norms) and only
    the isotropic-residual assumption, Tr/‖·‖_F of Cᵀ M C + Tr(M) σ_e² I_d (Eq. 7, first line)."""
    scaled = models.scale(params, alpha)
    proj = curvature.projected(setup.model.apply, scaled, basis, setup.x, setup.y,
                               chunk_size=config.chunk_size)
    logits, jr = logit_tangents(setup.model.apply, scaled, basis, setup.x,
                                chunk_size=config.chunk_size)
    p = objective.probs(logits)
    stats = random_model.logit_gradient_stats(jr, unbiased=config.unbiased)
    d = basis.shape[1]
    m = random_model.psd_softmax_hessian(p)
    means_model = (stats.class_means.T @ m @ stats.class_means
                   + jnp.trace(m) * stats.sigma_e2 * jnp.eye(d, dtype=m.dtype))
    return {
        "seed": seed, "alpha": alpha, "dim": d, "n_samples": len(setup.x),
        "mean_entropy": mean_entropy(p),
        "gterm_positive_curvature": positive_curvature(proj.gterm),
        "hessian_positive_curvature": positive_curvature(proj.hessian),
        "predicted_positive_curvature": _float(random_model.expected_gterm_curvature(
            p, stats.sigma_c2, stats.sigma_e2, d)),
        "predicted_positive_curvature_unit": _float(random_model.expected_gterm_curvature(
            p, unit_sigmas[0], unit_sigmas[1], d)),
        "predicted_positive_curvature_means": positive_curvature(means_model),
        "sigma_c2": _float(stats.sigma_c2), "sigma_e2": _float(stats.sigma_e2),
        "gamma_p": _float(random_model.gamma_p(p)), "loss": _float(proj.loss),
    }


def run_fig3(
    config: Fig3Config, out_dir: str | Path, *, data_dir: str | None = None,
    progress: Progress | None = None,
) -> list[Record]:
    """Fig. 3, resumable per (seed, α). Returns all records of ``out_dir``."""
    validate(config)
    setup = make_setup(config, load_data(config.dataset, config.split, config.n_samples,
                                         data_dir=data_dir))
    _check_dim(setup, config.dim)
    existing = _open(config, out_dir)
    done = {(r["seed"], r["alpha"]) for r in existing}
    todo = [(s, a) for s in range(config.seeds) for a in _alphas(config) if (s, a) not in done]
    states: dict[int, tuple] = {}
    for seed, alpha in _iterate(todo, progress):
        if seed not in states:
            params, basis = seed_state(setup, config, seed)
            _, jr = logit_tangents(setup.model.apply, params, basis, setup.x,
                                   chunk_size=config.chunk_size)
            stats = random_model.logit_gradient_stats(jr, unbiased=config.unbiased)
            states[seed] = (params, basis, (_float(stats.sigma_c2), _float(stats.sigma_e2)))
        params, basis, unit = states[seed]
        record = fig3_point(setup, config, params, basis, seed, alpha, unit)
        results.append_records(out_dir, [_tag("fig3", "point", record)])
    return _load(out_dir)


def _by(records: list[Record], key: str, value: str) -> dict[float, np.ndarray]:
    table: dict[float, list[float]] = {}
    for r in records:
        table.setdefault(r[key], []).append(np.nan if r[value] is None else r[value])
    return {k: np.asarray(v, float) for k, v in sorted(table.items())}


def _band(table: dict[float, np.ndarray]) -> tuple[np.ndarray, ...]:
    xs = np.array(list(table))
    rows = [v[np.isfinite(v)] for v in table.values()]
    stat = [(np.median(v), v.min(), v.max()) if v.size else (np.nan,) * 3 for v in rows]
    med, low, high = (np.array(s) for s in zip(*stat))
    return xs, med, low, high


def summarize_fig3(records: list[Record]) -> dict[str, Any]:
    """Mean absolute gap between the true G-term curvature and Eq. (8) (over all defined
    (seed, α) points, relative to the true value, separately for α ≤ 1 and α > 1 — the
    pre-collapse regime, where one sample owns the G-term and Eq. (8) cannot follow it down to
    1 — and over the seed medians), its largest value, the same gap for the
    class-means diagnostic, the largest relative difference between σ's estimated at each α and
    at α = 1, and the Spearman correlation of the true curvature with the mean entropy."""
    recs = [r for r in records if r.get("kind") == "point"]
    true = np.array([np.nan if r["gterm_positive_curvature"] is None else r["gterm_positive_curvature"]
                     for r in recs])
    pred = np.array([np.nan if r["predicted_positive_curvature"] is None
                     else r["predicted_positive_curvature"] for r in recs])
    unit = np.array([np.nan if r["predicted_positive_curvature_unit"] is None
                     else r["predicted_positive_curvature_unit"] for r in recs])
    means = np.array([np.nan if r["predicted_positive_curvature_means"] is None
                      else r["predicted_positive_curvature_means"] for r in recs])
    ok = np.isfinite(true) & np.isfinite(pred)
    gap = np.abs(true - pred)[ok]
    ok_means = np.isfinite(true) & np.isfinite(means)
    alpha = np.array([r["alpha"] for r in recs], float)

    def gap_where(mask):
        sel = ok & mask
        return float(np.abs(true - pred)[sel].mean()) if sel.any() else float("nan")

    _, med_true, _, _ = _band(_by(recs, "alpha", "gterm_positive_curvature"))
    _, med_pred, _, _ = _band(_by(recs, "alpha", "predicted_positive_curvature"))
    both = np.isfinite(med_true) & np.isfinite(med_pred)
    ok_unit = np.isfinite(unit) & np.isfinite(pred)
    entropy = np.array([r["mean_entropy"] for r in recs], float)
    return {
        "points": len(recs), "defined_points": int(ok.sum()),
        "mean_abs_gap": float(gap.mean()) if gap.size else float("nan"),
        "max_abs_gap": float(gap.max()) if gap.size else float("nan"),
        "mean_rel_gap": float((gap / true[ok]).mean()) if gap.size else float("nan"),
        "mean_abs_gap_alpha_le_1": gap_where(alpha <= 1 + 1e-9),
        "mean_abs_gap_alpha_gt_1": gap_where(alpha > 1 + 1e-9),
        "mean_abs_gap_of_medians": float(np.abs(med_true - med_pred)[both].mean()) if both.any()
        else float("nan"),
        "mean_abs_gap_class_means_model": float(np.abs(true - means)[ok_means].mean())
        if ok_means.any() else float("nan"),
        "max_rel_diff_sigma_each_vs_unit": float(np.max(np.abs(unit - pred)[ok_unit] / pred[ok_unit]))
        if ok_unit.any() else float("nan"),
        "spearman_entropy_vs_gterm_curvature": _spearman(entropy[ok], true[ok]),
    }


def fig3_figure(records: list[Record], *, title: str | None = None,
                path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 3: positive curvature of the true G-term and of E G (Eq. 8) vs α, median and min/max
    bands over seeds (left; dashed: the class-means diagnostic), and every (seed, α) point
    against its mean softmax entropy (right)."""
    recs = [r for r in records if r.get("kind") == "point"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    styles = (("gterm_positive_curvature", "true G-term $G_*$", "tab:blue", "-"),
              ("predicted_positive_curvature", r"$\mathbb{E}G_*$, Eq. (8)", "tab:orange", "-"),
              ("predicted_positive_curvature_means", r"Eq. (7) with estimated $c_k$", "grey", "--"))
    for field, label, color, ls in styles:
        xs, med, low, high = _band(_by(recs, "alpha", field))
        axes[0].plot(xs, med, marker="o", ms=3, color=color, ls=ls, label=label)
        if ls == "-":
            axes[0].fill_between(xs, low, high, color=color, alpha=0.25, lw=0)
            values = [np.nan if r[field] is None else r[field] for r in recs]
            axes[1].scatter([r["mean_entropy"] for r in recs], values, s=10, color=color,
                            label=label)
    axes[0].set_xscale("log")
    axes[0].set_xlabel(r"initialization scale $\alpha$")
    axes[1].set_xlabel("mean softmax entropy (nats)")
    for ax in axes:
        ax.set_ylabel(r"positive curvature $\mathrm{Tr}/\|\cdot\|_F$")
        ax.grid(alpha=0.3, lw=0.3)
        ax.legend(fontsize=8)
    return plots.finish(fig, title, path_stem)


# ============================================================================ Fig. 4 right


def gamma_curves(logits: jax.Array, alphas: Sequence[float]) -> tuple[np.ndarray, ...]:
    """For logit sets z (S, K) scaled by each α: entropies (A, S), Γ_p (A, S) of each set's
    diag(p) − ppᵀ, and the mean entropy (A,) and Γ_p (A,) of the set-averaged matrix (Eq. 10)."""
    scaled = jnp.asarray(alphas, logits.dtype)[:, None, None] * logits[None]
    p = objective.probs(scaled)  # (A, S, K)
    entropy = metrics.softmax_entropy(p)
    gamma = jax.vmap(jax.vmap(random_model.gamma_p))(p)
    gamma_batch = jax.vmap(random_model.gamma_p)(p)
    return (np.asarray(entropy), np.asarray(gamma), np.asarray(entropy).mean(axis=1),
            np.asarray(gamma_batch))


def fig4_logits(config: Fig4RightConfig, data_dir: str | None = None) -> jax.Array:
    """The logit sets: a Kaiming model's logits of the first ``n_sets`` samples, or N(0, std²)."""
    if config.source == "gaussian":
        rng = np.random.default_rng(config.seed)
        z = rng.normal(0.0, config.logit_std, (config.n_sets, config.num_classes))
        return jnp.asarray(z, jnp.dtype(config.dtype))
    setup = make_setup(config, load_data(config.dataset, config.split, config.n_sets,
                                         data_dir=data_dir))
    params = init_params(setup, config, jax.random.key(config.seed))
    return setup.model.apply(params, setup.x)


def run_fig4_right(
    config: Fig4RightConfig, out_dir: str | Path, *, data_dir: str | None = None,
    progress: Progress | None = None,
) -> list[Record]:
    """Fig. 4 right (cheap: computed at once; a complete directory is returned as it is)."""
    validate(config)
    logits = fig4_logits(config, data_dir)
    existing = _open(config, out_dir)
    if existing:
        return existing
    alphas = _alphas(config)
    entropy, gamma, batch_entropy, batch_gamma = gamma_curves(logits, alphas)
    records = []
    for i, alpha in enumerate(alphas):
        for s in range(entropy.shape[1]):
            records.append(_tag("fig4-right", "set", {
                "set": s, "alpha": alpha, "entropy": float(entropy[i, s]),
                "gamma_p": float(gamma[i, s]), "gamma_p_inv2": float(gamma[i, s] ** -2)}))
        records.append(_tag("fig4-right", "batch", {
            "set": -1, "alpha": alpha, "entropy": float(batch_entropy[i]),
            "gamma_p": float(batch_gamma[i]), "gamma_p_inv2": float(batch_gamma[i] ** -2)}))
    results.append_records(out_dir, records)
    return _load(out_dir)


def _curves(records: list[Record], kind: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    out: dict[int, list] = {}
    for r in records:
        if r.get("kind") == kind:
            out.setdefault(r["set"], []).append(
                (r["entropy"], np.nan if r["gamma_p_inv2"] is None else r["gamma_p_inv2"]))
    return {s: tuple(np.array(v, float).T) for s, v in out.items()}


def summarize_fig4_right(records: list[Record]) -> dict[str, Any]:
    """Spearman correlation of Γ_p^-2 with entropy per logit set (monotone decrease ⇒ −1), and
    Γ_p^-2 at the highest and lowest entropy reached (1/(K−1) at uniform p; → 1 at collapse)."""
    sets = _curves(records, "set")
    rhos = np.array([_spearman(h, g) for h, g in sets.values()])
    batch = _curves(records, "batch").get(-1)
    ok = np.isfinite(batch[1]) if batch else None
    return {
        "sets": len(sets),
        "spearman_median": float(np.nanmedian(rhos)), "spearman_max": float(np.nanmax(rhos)),
        "fraction_decreasing": float(np.mean(rhos < 0)),
        "batch_spearman": _spearman(*batch) if batch else float("nan"),
        "batch_gamma_inv2_at_max_entropy": float(batch[1][ok][np.argmax(batch[0][ok])]) if batch else
        float("nan"),
        "batch_gamma_inv2_at_min_entropy": float(batch[1][ok][np.argmin(batch[0][ok])]) if batch else
        float("nan"),
    }


def fig4_right_figure(records: list[Record], *, title: str | None = None,
                      path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 4 right: Γ_p^-2 vs entropy, one pink curve per logit set, red for the average matrix."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for h, g in _curves(records, "set").values():
        ax.plot(h, g, color="tab:pink", alpha=0.5, lw=1)
    batch = _curves(records, "batch").get(-1)
    if batch:
        ax.plot(*batch, color="red", lw=2, label="average matrix")
        ax.legend(fontsize=8)
    ax.set_xlabel(r"softmax entropy $\mathbb{H}(p)$ (nats)")
    ax.set_ylabel(r"$\Gamma_p^{-2}$")
    ax.grid(alpha=0.3, lw=0.3)
    return plots.finish(fig, title, path_stem, ax)


# ============================================================================ Fig. 5 left


def load_fig5_datasets(
    config: Fig5LeftConfig, data_dir: str | None
) -> tuple[dict[str, data.Dataset], list[Record]]:
    """Balanced datasets by spec; absent optional ones become ``skipped`` records."""
    sets: dict[str, data.Dataset] = {}
    skipped: list[Record] = []
    shape = None
    for spec in config.datasets:
        if _parse_dataset(spec)[0] == "gaussian":
            continue
        try:
            ds = load_data(spec, config.split, config.n_samples, data_dir=data_dir, balanced=True)
        except FileNotFoundError as error:
            if _parse_dataset(spec)[0] not in config.optional_datasets:
                raise
            skipped.append(_tag("fig5-left", "skipped", {
                "dataset": spec, "reason": str(error).splitlines()[0]}))
            continue
        if shape is not None and ds.x.shape[1:] != shape:
            raise ValueError(f"{spec} images have shape {ds.x.shape[1:]}, others {shape}")
        shape = ds.x.shape[1:]
        sets[spec] = ds
    for spec in config.datasets:
        if _parse_dataset(spec)[0] == "gaussian":
            n = min([len(d) for d in sets.values()] or [config.n_samples])
            sets[spec] = load_data(spec, config.split, n, data_dir=data_dir, shape=shape)
    if len(sets) < 2:
        raise ValueError(f"fig5-left needs at least two datasets; have {sorted(sets)}")
    return {s: sets[s] for s in config.datasets if s in sets}, skipped


def fig5_left_seed(
    config: Fig5LeftConfig, setups: dict[str, Setup], seed: int
) -> list[Record]:
    """Gradients of one initialisation on every dataset, and all pairwise cosines."""
    first = next(iter(setups.values()))
    params = init_params(first, config, jax.random.key(seed))
    grads, deltas, records = {}, {}, []
    for spec, setup in setups.items():
        loss, grad = curvature.loss_and_gradient(setup.model.apply, params, setup.x, setup.y,
                                                 chunk_size=config.chunk_size)
        p = objective.probs(logits_of(setup.model.apply, params, setup.x))
        prior = data.class_prior(np.asarray(setup.y), setup.num_classes)
        deltas[spec] = np.asarray(p.mean(axis=0), float) - prior
        grads[spec] = grad
        records.append(_tag("fig5-left", "dataset", {
            "seed": seed, "dataset": spec, "n_samples": len(setup.x),
            "gradient_norm": _float(jnp.linalg.norm(grad)), "loss": _float(loss),
            "q_gap": float(np.linalg.norm(deltas[spec])), "mean_entropy": mean_entropy(p)}))
    names = list(setups)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            da, db = deltas[a], deltas[b]
            records.append(_tag("fig5-left", "pair", {
                "seed": seed, "dataset_a": a, "dataset_b": b,
                "cosine": _float(metrics.cosine_similarity(grads[a], grads[b])),
                "predicted_cosine": float(da @ db / (np.linalg.norm(da) * np.linalg.norm(db)))}))
    return records


def run_fig5_left(
    config: Fig5LeftConfig, out_dir: str | Path, *, data_dir: str | None = None,
    progress: Progress | None = None,
) -> list[Record]:
    """Fig. 5 left, resumable per initialisation seed."""
    validate(config)
    datasets, skipped = load_fig5_datasets(config, data_dir)
    setups = {spec: make_setup(config, ds) for spec, ds in datasets.items()}
    existing = _open(config, out_dir)
    if not any(r["kind"] == "skipped" for r in existing) and skipped:
        results.append_records(out_dir, skipped)
    done = {r["seed"] for r in existing if r["kind"] == "pair"}
    todo = [s for s in range(config.inits) if s not in done]
    for seed in _iterate(todo, progress):
        results.append_records(out_dir, fig5_left_seed(config, setups, seed))
    return _load(out_dir)


def cosine_table(records: list[Record], field: str = "cosine") -> tuple[list[str], np.ndarray,
                                                                         np.ndarray]:
    """Dataset names, mean and standard deviation over seeds of the pairwise ``field`` (K×K)."""
    pairs = [r for r in records if r.get("kind") == "pair"]
    names = list(dict.fromkeys([n for r in pairs for n in (r["dataset_a"], r["dataset_b"])]))
    mean = np.eye(len(names))
    std = np.zeros((len(names), len(names)))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i < j:
                v = np.array([r[field] for r in pairs if (r["dataset_a"], r["dataset_b"]) in
                              ((a, b), (b, a)) and r[field] is not None], float)
                mean[i, j] = mean[j, i] = v.mean() if v.size else np.nan
                std[i, j] = std[j, i] = v.std() if v.size else np.nan
    return names, mean, std


def summarize_fig5_left(records: list[Record]) -> dict[str, Any]:
    """Mean ± std cosine per dataset pair, with the prediction cos(δ_A, δ_B), and skipped sets."""
    names, mean, std = cosine_table(records)
    _, pred, _ = cosine_table(records, "predicted_cosine")
    pairs = {f"{a} vs {b}": (float(mean[i, j]), float(std[i, j]), float(pred[i, j]))
             for i, a in enumerate(names) for j, b in enumerate(names) if i < j}
    return {
        "inits": len({r["seed"] for r in records if r.get("kind") == "pair"}),
        "cosine_mean_std_predicted": pairs,
        "min_mean_cosine": float(min(v[0] for v in pairs.values())) if pairs else float("nan"),
        "skipped": [f"{r['dataset']}: {r['reason']}" for r in records if r.get("kind") == "skipped"],
    }


def fig5_left_figure(records: list[Record], *, title: str | None = None,
                     path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 5 left: mean cosine similarity matrix (± std over initialisations annotated)."""
    names, mean, std = cosine_table(records)
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2.2, 1.1 * len(names) + 1.5))
    image = ax.imshow(mean, vmin=-1, vmax=1, cmap="RdBu_r")
    for i in range(len(names)):
        for j in range(len(names)):
            text = "1" if i == j else f"{mean[i, j]:.2f}\n±{std[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    fig.colorbar(image, ax=ax, label="gradient cosine similarity")
    return plots.finish(fig, title, path_stem, ax)


# ============================================================================ Fig. 5 right


def fig5_calibration(
    setup: Setup, config: Fig5RightConfig, params: Any, subset_size: int
) -> Record:
    """σ_c² on the whole pool from the full-space class means c_k (K, P), their Gram matrix
    C Cᵀ, and the two predicted slopes of Eq. (9): √(P σ_c²) (exact) and P σ_c² (paper)."""
    c = class_mean_logit_gradients(setup.model.apply, params, setup.x, chunk_size=config.chunk_size)
    sigma_c2 = _float(jnp.mean(jnp.square(c)))
    p = setup.num_params
    return {
        "seed": config.seed, "num_params": p, "n_pool": len(setup.x), "n_subset": subset_size,
        "sigma_c2": sigma_c2, "class_mean_gram": np.asarray(c @ c.T, float).tolist(),
        "slope_exact": math.sqrt(p * sigma_c2), "slope_paper": p * sigma_c2,
    }


def fig5_prior_record(
    setup: Setup, config: Fig5RightConfig, params: Any, pool: data.Dataset,
    indices: list[np.ndarray], calibration: Record, prior_index: int,
) -> Record:
    """One prior Q ~ Dirichlet(1): subset with that prior, its gradient norm, Q̂ − Q and Eq. (9)."""
    prior_q = data.sample_prior([config.prior_seed, prior_index], setup.num_classes)
    subset = data.subset_with_prior(pool, prior_q, calibration["n_subset"],
                                    seed=[config.prior_seed, prior_index, 1], indices=indices)
    x = jnp.asarray(subset.x, setup.dtype)
    y = jnp.asarray(subset.y, jnp.int32)
    loss, grad = curvature.loss_and_gradient(setup.model.apply, params, x, y,
                                             chunk_size=config.chunk_size)
    p = objective.probs(logits_of(setup.model.apply, params, x))
    delta = np.asarray(p.mean(axis=0), float) - data.class_prior(subset.y, setup.num_classes)
    gap = float(np.linalg.norm(delta))
    gram = np.asarray(calibration["class_mean_gram"], float)
    return {
        "prior": prior_index, "prior_q": np.asarray(prior_q).tolist(),
        "gradient_norm": _float(jnp.linalg.norm(grad)), "q_gap": gap, "loss": _float(loss),
        "mean_entropy": mean_entropy(p),
        "predicted_norm_exact": calibration["slope_exact"] * gap,
        "predicted_norm_paper": calibration["slope_paper"] * gap,
        "predicted_norm_means": float(np.sqrt(max(delta @ gram @ delta, 0.0))),
    }


def run_fig5_right(
    config: Fig5RightConfig, out_dir: str | Path, *, data_dir: str | None = None,
    progress: Progress | None = None,
) -> list[Record]:
    """Fig. 5 right, resumable per prior (the calibration record is written first)."""
    validate(config)
    pool = load_data(config.dataset, config.split, config.n_samples, data_dir=data_dir)
    setup = make_setup(config, pool)
    params = init_params(setup, config, jax.random.key(config.seed))
    indices = data.class_indices(pool.y, pool.num_classes)
    existing = _open(config, out_dir)
    calibration = next((r for r in existing if r["kind"] == "calibration"), None)
    if calibration is None:
        smallest = min(len(i) for i in indices)
        subset_size = min(config.subset_size, smallest)
        calibration = _tag("fig5-right", "calibration",
                           fig5_calibration(setup, config, params, subset_size))
        if subset_size < config.subset_size:
            calibration["flags"] = [f"subset_size_capped_to_smallest_class_{smallest}"]
        results.append_records(out_dir, [calibration])
    done = {r["prior"] for r in existing if r["kind"] == "prior"}
    todo = [i for i in range(config.n_priors) if i not in done]
    for i in _iterate(todo, progress):
        record = fig5_prior_record(setup, config, params, pool, indices, calibration, i)
        results.append_records(out_dir, [_tag("fig5-right", "prior", record)])
    return _load(out_dir)


def summarize_fig5_right(records: list[Record]) -> dict[str, Any]:
    """Least-squares slope through the origin of ‖∇ℓ‖ on ‖Q̂ − Q‖, and its ratio to the predicted
    slopes √(P σ_c²) (exact reading) and P σ_c² (the paper's printed reading); Spearman ρ; the
    median ratio of the gradient norm to the c_k-based prediction √(δᵀCCᵀδ)."""
    cal = next(r for r in records if r.get("kind") == "calibration")
    priors = [r for r in records if r.get("kind") == "prior"]
    gap = np.array([r["q_gap"] for r in priors], float)
    norm = np.array([r["gradient_norm"] for r in priors], float)
    means = np.array([r["predicted_norm_means"] for r in priors], float)
    slope = float(gap @ norm / (gap @ gap)) if priors else float("nan")
    r2 = 1 - np.sum((norm - slope * gap) ** 2) / np.sum((norm - norm.mean()) ** 2) if priors else np.nan
    return {
        "priors": len(priors), "num_params": cal["num_params"], "n_subset": cal["n_subset"],
        "sigma_c2": cal["sigma_c2"], "fitted_slope": slope,
        "slope_exact": cal["slope_exact"], "slope_paper": cal["slope_paper"],
        "fitted_over_exact": slope / cal["slope_exact"], "fitted_over_paper": slope / cal["slope_paper"],
        "r2_through_origin": float(r2), "spearman": _spearman(gap, norm),
        "median_norm_over_means_prediction": float(np.median(norm / means)) if priors else float("nan"),
        "flags": cal.get("flags", []),
    }


def fig5_right_figure(records: list[Record], *, title: str | None = None,
                      path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 5 right: gradient norm vs ‖Q̂ − Q‖₂ with the fitted and both predicted slopes."""
    s = summarize_fig5_right(records)
    priors = [r for r in records if r.get("kind") == "prior"]
    gap = np.array([r["q_gap"] for r in priors], float)
    norm = np.array([r["gradient_norm"] for r in priors], float)
    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.scatter(gap, norm, s=6, alpha=0.6, color="tab:blue", label="subsets")
    xs = np.linspace(0, gap.max() * 1.05 if gap.size else 1, 50)
    ax.plot(xs, s["fitted_slope"] * xs, color="black", lw=1, label=f"fit {s['fitted_slope']:.3g}")
    ax.plot(xs, s["slope_exact"] * xs, color="tab:green", ls="--",
            label=rf"$\sqrt{{P}}\sigma_c$ = {s['slope_exact']:.3g}")
    ax.plot(xs, s["slope_paper"] * xs, color="tab:red", ls=":",
            label=rf"$P\sigma_c^2$ = {s['slope_paper']:.3g} (as printed)")
    top = max(norm.max() if norm.size else 1, 1e-12) * 1.3
    ax.set_ylim(0, top)
    ax.set_xlabel(r"$\|\hat Q - Q\|_2$")
    ax.set_ylabel(r"gradient norm $\|\nabla_\theta \ell\|$")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, lw=0.3)
    return plots.finish(fig, title, path_stem, ax)


# ============================================================================ Fig. 6


FIG6_FIELDS = ("mean_entropy", "gradient_norm", "hessian_positive_curvature",
               "gterm_positive_curvature", "loss", "q_gap")


def init_state_fn(setup: Setup, config: Fig6Config) -> Callable[[jax.Array], tuple[Any, jax.Array]]:
    """key -> (θ0, R): Kaiming parameters and a (P, d) basis, keys split as in ``seed_state``."""
    shapes = jax.eval_shape(lambda: models.init(setup.model, jax.random.key(0), setup.input_shape,
                                                config.init, setup.dtype))

    def state(key):
        key_init, key_basis = jax.random.split(key)
        params = models.init_from_shapes(shapes, key_init, config.init, setup.dtype)
        basis = subspace.random_basis(key_basis, setup.num_params, config.dim, config.basis,
                                      setup.dtype)
        return params, basis

    return state


def _chunk_sums(apply_fn, input_layer, params, columns, x, y, w) -> tuple[jax.Array, ...]:
    """One chunk's weighted sums: projected G-term and H-term (d, d), loss, gradient (P,) — the
    chunk body of ``curvature.projected`` (T = 1) — plus Σ w·entropy and Σ w·p (K,)."""
    out = curvature.projected_chunk(apply_fn, params, columns, x, y, w, jnp.asarray(1.0, x.dtype),
                                    input_layer)
    probs = objective.probs(apply_fn(params, x))
    return (*out, jnp.sum(w * metrics.softmax_entropy(probs)), w @ probs)


def _finalize(sums: tuple[jax.Array, ...], prior: jax.Array) -> dict[str, jax.Array]:
    """Per-seed statistics from the chunk sums: positive curvature (Eq. 2) of the symmetrised
    projected Hessian and G-term, gradient norm, loss, mean entropy and ‖Q̂ − Q‖ (Eq. 9)."""
    g, h, loss, grad, entropy, q_hat = sums
    g, h = (g + g.T) / 2, (h + h.T) / 2

    def pc(matrix):
        return metrics.positive_curvature(metrics.eigenvalues(matrix))

    return {"mean_entropy": entropy, "gradient_norm": jnp.linalg.norm(grad), "loss": loss,
            "hessian_positive_curvature": pc(g + h), "gterm_positive_curvature": pc(g),
            "q_gap": jnp.linalg.norm(q_hat - prior)}


def _statistics(setup: Setup, config: Fig6Config, batched: bool) -> Callable[..., dict]:
    seed_state = init_state_fn(setup, config)
    shapes = jax.eval_shape(seed_state, jax.random.key(0))[0]
    input_layer = curvature.resolve_input_layer(setup.model.apply, shapes, setup.x[:1])

    def state(key):  # (θ0, R laid out for the chunk body, once per seed)
        params, basis = seed_state(key)
        return params, curvature.basis_columns(params, basis, input_layer)

    chunk = int(min(config.chunk_size or len(setup.x), len(setup.x)))
    body = functools.partial(_chunk_sums, setup.model.apply, input_layer)
    if batched:
        make_state = jax.jit(lambda keys: jax.lax.map(state, keys))
        chunk_fn = jax.jit(jax.vmap(body, in_axes=(0, 0, None, None, None)))
        finalize = jax.jit(jax.vmap(_finalize, in_axes=(0, None)))
    else:
        make_state, chunk_fn, finalize = jax.jit(state), jax.jit(body), jax.jit(_finalize)

    def run(keys, x, y):
        params, columns = make_state(keys)
        xs, ys, ws = curvature.padded_chunks(x, y, chunk)
        sums = None
        for batch in zip(xs, ys, ws):  # Python loop over sample chunks, one compiled chunk body
            out = chunk_fn(params, columns, *batch)
            sums = out if sums is None else jax.tree_util.tree_map(jnp.add, sums, out)
        prior = jnp.mean(jax.nn.one_hot(y, setup.num_classes, dtype=x.dtype), axis=0)
        return finalize(sums, prior)

    return run


def batched_statistics(setup: Setup, config: Fig6Config) -> Callable[..., dict]:
    """(keys (S,), x, y) -> dict of (S,) arrays: ``jax.vmap`` over the seeds' (θ0, R) of one jitted
    chunk body, looped over chunks of ``config.chunk_size`` samples in Python.

    The states are drawn with ``lax.map`` (vmapping threefry over keys made XLA's CPU compile
    ~5x slower). Chunks are looped in Python rather than scanned: on CPU convolutions inside an
    XLA loop body ran ~8x slower (LeNet-5), and unrolling many chunks compiles slowly."""
    return _statistics(setup, config, batched=True)


def looped_statistics(setup: Setup, config: Fig6Config) -> Callable[..., dict]:
    """(key, x, y) -> dict of scalars for one seed: the same computation without ``vmap`` (the
    Python-loop-over-seeds baseline of ``benchmarks/bench_inside.py``)."""
    return _statistics(setup, config, batched=False)


def seed_keys(first: int, count: int) -> jax.Array:
    """Keys ``jax.random.key(s)`` for s = first .. first + count − 1."""
    return jax.vmap(jax.random.key)(jnp.arange(first, first + count))


def fig6_chunk_size(setup: Setup, config: Fig6Config) -> int:
    """Samples per chunk so that a vmapped chunk of seeds fits the default memory budget."""
    params = jax.eval_shape(lambda: models.init(setup.model, jax.random.key(0), setup.input_shape,
                                                dtype=setup.dtype))
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), params)
    tangents = config.dim * config.seeds_per_chunk
    return _chunk_size(setup.model.apply, zeros, setup.x, tangents, config.chunk_size)


def run_fig6(
    config: Fig6Config, out_dir: str | Path, *, data_dir: str | None = None,
    progress: Progress | None = None,
) -> list[Record]:
    """Fig. 6, vmapped over ``seeds_per_chunk`` seeds at a time, resumable per chunk."""
    validate(config)
    ds = load_data(config.dataset, config.split, config.n_samples, data_dir=data_dir, balanced=True)
    setup = make_setup(config, ds)
    _check_dim(setup, config.dim)
    existing = _open(config, out_dir)
    config = dataclasses.replace(config, chunk_size=fig6_chunk_size(setup, config))
    batched = batched_statistics(setup, config)
    done = {r["seed"] for r in existing if r["kind"] == "init"}
    starts = [s for s in range(0, config.n_inits, config.seeds_per_chunk)
              if any(t not in done for t in range(s, min(s + config.seeds_per_chunk, config.n_inits)))]
    for start in _iterate(starts, progress):
        # always a full chunk of seeds (one compiled shape); seeds past n_inits are dropped
        out = jax.device_get(batched(seed_keys(start, config.seeds_per_chunk), setup.x, setup.y))
        records = [
            _tag("fig6", "init", {"seed": start + i, "n_samples": len(setup.x),
                                  "dim": config.dim, **{f: float(out[f][i]) for f in FIG6_FIELDS}})
            for i in range(config.seeds_per_chunk)
            if start + i not in done and start + i < config.n_inits
        ]
        results.append_records(out_dir, records)
    return _load(out_dir)


FIG6_PAIRS = (("mean_entropy", "hessian_positive_curvature"), ("mean_entropy", "gradient_norm"),
              ("mean_entropy", "loss"), ("hessian_positive_curvature", "loss"),
              ("hessian_positive_curvature", "gradient_norm"), ("mean_entropy",
                                                                "gterm_positive_curvature"),
              ("q_gap", "gradient_norm"))


def summarize_fig6(records: list[Record]) -> dict[str, Any]:
    """Spearman rank correlations between the per-initialisation statistics."""
    inits = [r for r in records if r.get("kind") == "init"]
    col = {f: np.array([np.nan if r[f] is None else r[f] for r in inits], float) for f in FIG6_FIELDS}
    return {"inits": len(inits),
            **{f"spearman_{a}_vs_{b}": _spearman(col[a], col[b]) for a, b in FIG6_PAIRS}}


def fig6_figure(records: list[Record], *, title: str | None = None,
                path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 6: positive curvature, gradient norm and initial loss against the mean softmax entropy
    (colour: positive curvature of the Hessian); Spearman ρ in each title."""
    inits = [r for r in records if r.get("kind") == "init"]
    col = {f: np.array([np.nan if r[f] is None else r[f] for r in inits], float) for f in FIG6_FIELDS}
    panels = (("hessian_positive_curvature", "positive curvature (Hessian)"),
              ("gradient_norm", "gradient norm"), ("loss", "initial loss"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (field, label) in zip(axes, panels):
        sc = ax.scatter(col["mean_entropy"], col[field], c=col["hessian_positive_curvature"], s=8,
                        cmap="viridis")
        ax.set_xlabel("mean softmax entropy (nats)")
        ax.set_ylabel(label)
        ax.set_title(rf"Spearman $\rho$ = {_spearman(col['mean_entropy'], col[field]):.2f}",
                     fontsize=9)
        ax.grid(alpha=0.3, lw=0.3)
    fig.colorbar(sc, ax=axes[-1], label="positive curvature")
    return plots.finish(fig, title, path_stem)


# ============================================================================ Fig. 10


def softmax_uncertainty(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample entropy and t = Tr(diag p − ppᵀ) = 1 − ‖p‖², float64 and cancellation-free
    (1 − p_max is summed from the other entries), for logits (..., K)."""
    log_p = scipy.special.log_softmax(np.asarray(logits, np.float64), axis=-1)
    p = np.exp(log_p)
    entropy = -np.sum(np.where(p > 0, p * log_p, 0.0), axis=-1)
    is_max = np.arange(p.shape[-1]) == np.argmax(p, axis=-1)[..., None]
    rest = np.sum(np.where(is_max, 0.0, p), axis=-1, keepdims=True)
    t = np.sum(p * np.where(is_max, rest, 1 - p), axis=-1)
    return entropy, t


def collapse_alpha(logits: np.ndarray, degree: int, floor: float = 1e-30) -> float:
    """α beyond which every sample's t < ``floor`` (softmax collapsed): the top-two logit gap Δ
    of the last sample to collapse satisfies α^L Δ ≈ −log(floor)."""
    top2 = np.sort(np.asarray(logits, np.float64), axis=-1)[:, -2:]
    gap = max(float(np.min(top2[:, 1] - top2[:, 0])), 1e-12)
    return float((-math.log(floor) / gap) ** (1.0 / degree))


def choose_eig_alphas(alphas: np.ndarray, share: np.ndarray, t_top: np.ndarray,
                      levels: Sequence[float], floor: float = 1e-20) -> list[float]:
    """α = 1 and, per level, the smallest grid α where the most uncertain sample holds that share
    of Σ_μ t_μ (its G-term dominates) while t stays above ``floor`` (resolvable in float32)."""
    chosen = [1.0]
    for level in levels:
        ok = np.flatnonzero((share >= level) & (t_top >= floor))
        if ok.size:
            chosen.append(float(alphas[ok[0]]))
    return sorted(set(chosen))


def first_layer_slice(params: Any) -> tuple[int, tuple[int, ...]]:
    """(offset in the flat parameter vector, kernel shape (inputs, hidden)) of the first dense
    layer (``dense0``); ValueError for models whose first layer is not dense."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    offset = 0
    for path, leaf in leaves:
        names = [getattr(k, "key", None) for k in path]
        if "dense0" in names and names[-1] == "kernel":
            return offset, tuple(leaf.shape)
        offset += leaf.size
    raise ValueError("fig10 needs a fully connected first layer (lenet300 or mlp)")


def _block_matvec(apply_fn, operator: str, offset: int, num_params: int, unravel):
    """v1 ↦ [A (v1 ⊕ 0)]₁: the first-layer block of the full-batch Hessian or G-term."""

    def matvec(v1, params, xs, ys, ws):
        v = jnp.zeros((num_params,), v1.dtype).at[offset: offset + v1.size].set(v1)

        def chunk(acc, batch):
            x, y, w = batch
            if operator == "hessian":
                grad = jax.grad(lambda p: objective.cross_entropy(apply_fn(p, x), y, 1.0, w))
                out = jax.jvp(grad, (params,), (unravel(v),))[1]
            else:  # G-term: J^T M J v with M in the centred form
                logits, jvp_fn = jax.linearize(lambda p: apply_fn(p, x), params)
                u = jvp_fn(unravel(v))
                prob = objective.probs(logits)
                mu = prob * objective.centre(prob, u) * w[:, None]
                (out,) = jax.linear_transpose(jvp_fn, params)(mu)
            return acc + ravel_pytree(out)[0][offset: offset + v1.size], None

        with jax.default_matmul_precision("highest"):
            return jax.lax.scan(chunk, jnp.zeros_like(v1), (xs, ys, ws))[0]

    return matvec


def top_eigenpair(matvec, dim: int, args: tuple, *, key: jax.Array, num_iters: int,
                  dtype: Any) -> tuple[float, np.ndarray, float, str]:
    """Largest algebraic eigenpair of a symmetric operator: ``gzone.lanczos.eigsh`` when present,
    else a local power iteration on A + s I (s from a first Rayleigh estimate). Returns
    (eigenvalue, eigenvector, residual norm, method)."""
    try:
        from gzone import lanczos
    except ImportError:  # pragma: no cover - depends on a colleague's module
        lanczos = None
    if lanczos is not None:
        res = lanczos.eigsh(matvec, dim, 1, *args, key=key, num_iters=min(num_iters, dim),
                            which="LA", dtype=dtype)
        return (float(res.eigenvalues[0]), np.asarray(res.eigenvectors[:, 0]),
                float(res.residual_norms[0]), "lanczos")
    step = jax.jit(matvec)
    v = jax.random.normal(key, (dim,), dtype)
    v = v / jnp.linalg.norm(v)
    shift = jnp.linalg.norm(step(v, *args))  # ≥ |λ| of v's components: makes A + sI PSD-ish
    for _ in range(num_iters):
        w = step(v, *args) + shift * v
        v = w / jnp.linalg.norm(w)
    av = step(v, *args)
    lam = jnp.vdot(v, av)
    return float(lam), np.asarray(v), float(jnp.linalg.norm(av - lam * v)), "power"


def first_layer_operator(setup: Setup, config: Fig10Config, params: Any) -> Callable:
    """v1, params, xs, ys, ws ↦ first-layer block of the Hessian (or G-term) times v1; build it
    once per run: Lanczos compiles one step per operator object, reused at every α."""
    flat, unravel = ravel_pytree(params)
    offset, _ = first_layer_slice(params)
    return _block_matvec(setup.model.apply, config.operator, offset, flat.size, unravel)


def eigvec_record(
    setup: Setup, config: Fig10Config, params: Any, alpha: float, top_sample: int, share: float,
    matvec: Callable | None = None,
) -> Record:
    """Top eigenvector of the first-layer block at α, as an image: mean |·| (and signed mean) over
    hidden units; its top left singular vector vs every input (|cosine|). (For ReLU networks the
    H-term's first-layer block is zero — z is linear in one layer's weights — so H₁₁ = G₁₁.)"""
    scaled = models.scale(params, alpha)
    _, shape = first_layer_slice(scaled)
    size = int(np.prod(shape))
    cs = _chunk_size(setup.model.apply, scaled, setup.x, 1, config.chunk_size or 512)
    xs, ys, ws = curvature.padded_chunks(setup.x, setup.y, cs)
    matvec = matvec or first_layer_operator(setup, config, params)
    lam, vec, residual, method = top_eigenpair(
        matvec, size, (scaled, xs, ys, ws), key=jax.random.key(config.seed + 1),
        num_iters=config.lanczos_iters, dtype=setup.dtype)
    matrix = vec.reshape(shape).astype(np.float64)  # (inputs, hidden)
    image_shape = setup.input_shape
    heat = np.abs(matrix).mean(axis=1).reshape(image_shape).mean(axis=-1)
    signed = matrix.mean(axis=1).reshape(image_shape).mean(axis=-1)
    u1 = np.linalg.svd(matrix, full_matrices=False)[0][:, 0]
    inputs = np.asarray(setup.x, np.float64).reshape(len(setup.x), -1)
    cos = np.abs(inputs @ u1) / np.maximum(np.linalg.norm(inputs, axis=1), 1e-30)
    return {
        "alpha": alpha, "operator": config.operator, "method": method, "top_sample": top_sample,
        "top_share": share, "eigenvalue": lam, "residual": residual,
        "heatmap": heat.ravel().tolist(), "heatmap_signed": signed.ravel().tolist(),
        "heatmap_shape": list(heat.shape), "top_sample_cosine": float(cos[top_sample]),
        "best_sample": int(np.argmax(cos)), "best_cosine": float(cos.max()),
        "median_cosine": float(np.median(cos)),
    }


def run_fig10(
    config: Fig10Config, out_dir: str | Path, *, data_dir: str | None = None,
    progress: Progress | None = None,
) -> list[Record]:
    """Fig. 10: entropy sweep (all at once), then curvature and eigenvector points (resumable)."""
    validate(config)
    setup = make_setup(config, load_data(config.dataset, config.split, config.n_samples,
                                         data_dir=data_dir))
    if setup.degree is None:
        raise ValueError("fig10 scales logits as alpha^L: it needs a homogeneous model")
    params = init_params(setup, config, jax.random.key(config.seed))
    first_layer_slice(params)
    existing = _open(config, out_dir)
    logits1 = np.asarray(logits_of(setup.model.apply, params, setup.x), np.float64)
    alpha_max = config.alpha_max or 1.5 * collapse_alpha(logits1, setup.degree)
    alphas = np.geomspace(config.alpha_min, max(alpha_max, config.alpha_min), config.num_points)
    # samples collapse in the order of their top-two logit gap: t ≈ 2 exp(-α^L Δ) (App. C, D)
    top2 = np.sort(logits1, axis=-1)[:, -2:]
    tracked = np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[: config.track]
    sweep = [softmax_uncertainty(a ** setup.degree * logits1) for a in alphas]
    top = np.array([int(np.argmax(t)) for _, t in sweep])
    t_top = np.array([t[i] for (_, t), i in zip(sweep, top)])
    share = np.array([t.max() / t.sum() if t.sum() > 0 else np.nan for _, t in sweep])
    if not any(r["kind"] == "entropy" for r in existing):
        results.append_records(out_dir, [_tag("fig10", "entropy", {
            "alpha": float(a), "mean_entropy": float(h.mean()),
            "uncertain_samples": int(np.sum(h > 1e-3)), "top_sample": int(top[i]),
            "top_share": float(share[i]), "top_t": float(t_top[i]),
            "tracked_samples": tracked.tolist(), "tracked_entropies": h[tracked].tolist()})
            for i, (a, (h, _)) in enumerate(zip(alphas, sweep))])
    eig_alphas = (list(config.eig_alphas) if config.eig_alphas is not None else
                  choose_eig_alphas(alphas, share, t_top, config.share_levels))
    curv_alphas = (np.geomspace(config.alpha_min, alpha_max, config.curvature_points).tolist()
                   if config.curvature_points else [])
    done = {(r["kind"], r["alpha"]) for r in existing}
    todo = [("curvature", a) for a in curv_alphas if ("curvature", a) not in done]
    todo += [("eigvec", a) for a in eig_alphas if ("eigvec", a) not in done]
    basis, matvec = None, first_layer_operator(setup, config, params)
    for kind, alpha in _iterate(todo, progress):
        if kind == "curvature":
            if basis is None:
                _check_dim(setup, config.dim)
                basis = subspace.random_basis(jax.random.key(config.seed + 2), setup.num_params,
                                              config.dim, "orthonormal", setup.dtype)
            proj = curvature.projected(setup.model.apply, models.scale(params, alpha), basis,
                                       setup.x, setup.y, chunk_size=config.chunk_size)
            record = {"alpha": alpha, "dim": config.dim,
                      **{f"{term}_positive_curvature": positive_curvature(getattr(proj, term))
                         for term in ("hessian", "gterm", "hterm")}}
        else:
            _, ti = softmax_uncertainty(alpha ** setup.degree * logits1)
            mu0 = int(np.argmax(ti))
            share_mu0 = float(ti[mu0] / ti.sum()) if ti.sum() > 0 else float("nan")
            record = eigvec_record(setup, config, params, alpha, mu0, share_mu0, matvec)
        results.append_records(out_dir, [_tag("fig10", kind, record)])
    return _load(out_dir)


def summarize_fig10(records: list[Record]) -> dict[str, Any]:
    """The first α where one sample holds ≥ 90% of Σ_μ Tr(diag p^μ − p^μ p^μᵀ) (pre-collapse),
    whether that sample stays the most uncertain at every larger α, and per eigenvector α: the
    sample's share, |cos| of the eigenvector's image with it, and the best-aligned input."""
    ent = sorted((r for r in records if r.get("kind") == "entropy"), key=lambda r: r["alpha"])
    dominant = [i for i, r in enumerate(ent) if r["top_share"] is not None and r["top_share"] >= 0.9]
    later = [r["top_sample"] for r in ent[dominant[0]:] if r["top_t"] and r["top_t"] > 0] \
        if dominant else []
    eig = sorted((r for r in records if r.get("kind") == "eigvec"), key=lambda r: r["alpha"])
    return {
        "alpha_range": (ent[0]["alpha"], ent[-1]["alpha"]) if ent else None,
        "alpha_share_0.9": ent[dominant[0]]["alpha"] if dominant else None,
        "last_uncertain_sample": later[0] if later else None,
        "last_uncertain_sample_stays_top": bool(later) and len(set(later)) == 1,
        "eigvecs": [{k: r[k] for k in ("alpha", "top_sample", "top_share", "top_sample_cosine",
                                       "best_sample", "best_cosine", "median_cosine", "eigenvalue",
                                       "residual")} | {"method": r.get("method")} for r in eig],
    }


def fig10_figure(records: list[Record], *, title: str | None = None,
                 path_stem: str | Path | None = None, floor: float = 1e-30) -> plt.Figure:
    """Fig. 10: top row, first-layer top eigenvector images (mean |·| over hidden units, own
    colour scale each); bottom, the tracked per-sample entropies vs α (log scale, clipped at
    ``floor``; the last uncertain sample in black) and positive curvature of H and G."""
    eig = sorted((r for r in records if r.get("kind") == "eigvec"), key=lambda r: r["alpha"])
    ent = sorted((r for r in records if r.get("kind") == "entropy"), key=lambda r: r["alpha"])
    curv = sorted((r for r in records if r.get("kind") == "curvature"), key=lambda r: r["alpha"])
    cols = max(len(eig), 1)
    fig = plt.figure(figsize=(max(2.2 * cols, 7), 6))
    grid = fig.add_gridspec(2, cols, height_ratios=(1, 1.2))
    for i, r in enumerate(eig):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(np.asarray(r["heatmap"], float).reshape(r["heatmap_shape"]), cmap="magma")
        ax.set_title(rf"$\alpha$={r['alpha']:.3g}, share {r['top_share']:.2f}"
                     f"\n|cos| w/ #{r['top_sample']}: {r['top_sample_cosine']:.2f}", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    if ent:
        alphas = np.array([r["alpha"] for r in ent])
        tracked = np.maximum(np.array([r["tracked_entropies"] for r in ent], float), floor)
        ax.plot(alphas, tracked, lw=0.8, alpha=0.6)
        last = summarize_fig10(records)["last_uncertain_sample"]
        if last is not None and last in ent[0]["tracked_samples"]:
            column = ent[0]["tracked_samples"].index(last)
            ax.plot(alphas, tracked[:, column], color="black", lw=2, label=f"last uncertain #{last}")
            ax.legend(fontsize=7, loc="lower left")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(floor, 10)
        ax.set_ylabel(r"per-sample entropy $\mathbb{H}(p^\mu)$")
        for r in eig:
            ax.axvline(r["alpha"], color="grey", lw=0.5, ls="--")
    ax.set_xlabel(r"initialization scale $\alpha$")
    if curv:
        twin = ax.twinx()
        for term, color in (("hessian", "black"), ("gterm", "tab:blue")):
            twin.plot([r["alpha"] for r in curv],
                      [np.nan if r[f"{term}_positive_curvature"] is None
                       else r[f"{term}_positive_curvature"] for r in curv],
                      color=color, marker="o", ms=3, label=f"PC {term}")
        twin.set_ylabel("positive curvature")
        twin.legend(fontsize=7, loc="upper right")
    return plots.finish(fig, title, path_stem)


# ============================================================================ registry


@dataclasses.dataclass(frozen=True)
class Study:
    """One study: its config class, named presets, runner, summary and figure."""

    name: str
    config: type
    presets: dict[str, dict[str, Any]]
    run: Callable[..., list[Record]]
    summarize: Callable[[list[Record]], dict[str, Any]]
    figure: Callable[..., plt.Figure]


_LENET300 = {"model": "lenet300", "dataset": "fashion_mnist"}
_LENET5 = {"model": "lenet5", "dataset": "cifar10"}
_TINY = {"widths": (32, 16), "n_samples": 200, "dim": 10}

STUDIES: dict[str, Study] = {
    "fig3": Study("fig3", Fig3Config, {
        "default": {},
        "tiny": dict(_TINY, seeds=2, num_points=5, alpha_min=0.1, alpha_max=3.0),
        "lenet300-fashion": dict(_LENET300, n_samples=10000, dim=50, seeds=3, num_points=21,
                                 alpha_min=1e-2, alpha_max=1e2),
        "lenet5-cifar10": dict(_LENET5, n_samples=3000, dim=50, seeds=3, num_points=21,
                               alpha_min=1e-2, alpha_max=1e2),
    }, run_fig3, summarize_fig3, fig3_figure),
    "fig4-right": Study("fig4-right", Fig4RightConfig, {
        "default": {},
        "tiny": {"widths": (32, 16), "n_sets": 10, "num_points": 25},
        "gaussian": {"source": "gaussian"},
        "lenet300-fashion": dict(_LENET300),
        "lenet5-cifar10": dict(_LENET5),
    }, run_fig4_right, summarize_fig4_right, fig4_right_figure),
    "fig5-left": Study("fig5-left", Fig5LeftConfig, {
        "default": {},
        "tiny": {"widths": (32, 16), "n_samples": 200, "inits": 3, "datasets": ("digits", "gaussian")},
        "lenet300-fashion": {"model": "lenet300", "datasets": ("fashion_mnist", "mnist", "gaussian"),
                                 "n_samples": 10000, "inits": 5},
        "lenet5-cifar10": {"model": "lenet5", "datasets": ("cifar10", "svhn", "gaussian"),
                               "n_samples": 5000, "inits": 5},
    }, run_fig5_left, summarize_fig5_left, fig5_left_figure),
    "fig5-right": Study("fig5-right", Fig5RightConfig, {
        "default": {},
        "tiny": {"subset_size": 100, "n_priors": 30},
        "lenet5-cifar10": dict(_LENET5, n_samples=None, subset_size=5000, n_priors=2000),
        "lenet300-fashion": dict(_LENET300, n_samples=None, subset_size=5000, n_priors=2000),
    }, run_fig5_right, summarize_fig5_right, fig5_right_figure),
    "fig6": Study("fig6", Fig6Config, {
        "default": {},
        "tiny": {"widths": (16, 16, 16), "n_samples": 100, "dim": 10, "n_inits": 24, "seeds_per_chunk": 8},
        "lenet5-cifar10": dict(_LENET5, n_samples=3000, dim=50, n_inits=2000, seeds_per_chunk=8),
        "lenet300-fashion": dict(_LENET300, n_samples=3000, dim=50, n_inits=2000, seeds_per_chunk=8),
    }, run_fig6, summarize_fig6, fig6_figure),
    "fig10": Study("fig10", Fig10Config, {
        "default": {},
        "tiny": {"widths": (32, 16), "n_samples": 100, "dim": 10, "num_points": 61, "curvature_points": 3,
                     "lanczos_iters": 15, "share_levels": (0.9,)},
        "lenet300-fashion": dict(_LENET300, n_samples=10000, dim=50, num_points=201,
                                 curvature_points=13, lanczos_iters=40),
    }, run_fig10, summarize_fig10, fig10_figure),
}


def make_config(study: str, preset: str = "default", **overrides: Any) -> ModelDataConfig:
    """The config of ``study`` from a named preset plus field overrides (None values ignored)."""
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; choose one of {', '.join(STUDIES)}")
    entry = STUDIES[study]
    if preset not in entry.presets:
        raise ValueError(f"unknown preset {preset!r} for {study}; choose one of "
                         f"{', '.join(entry.presets)}")
    fields = {f.name for f in dataclasses.fields(entry.config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{study} has no option(s) {', '.join(unknown)}; options: "
                         f"{', '.join(sorted(fields))}")
    values = {**entry.presets[preset], **{k: v for k, v in overrides.items() if v is not None}}
    config = entry.config(**values)
    validate(config)
    return config


def run_study(config: ModelDataConfig, out_dir: str | Path, *, data_dir: str | None = None,
              progress: Progress | None = None) -> list[Record]:
    """Run (or resume) the study of ``config`` in ``out_dir``; all records of the directory."""
    return STUDIES[study_of(config)].run(config, out_dir, data_dir=data_dir, progress=progress)

