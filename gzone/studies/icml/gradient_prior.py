"""ICML Fig. 5 right and Eq. (9): the gradient norm against ‖Q̂ − Q‖₂ over class priors
Q ~ Uniform(simplex).

The gradient is the full one, so d = P, and σ_c² is estimated in full space. *Derivation.*
c_k = (1/N) Σ_μ ∇θ z_k(x_μ) = ∇θ [(1/N) Σ_μ z_k(x_μ)], so the (K, P) matrix of class means is the
Jacobian of the mean logit vector: K vector-Jacobian products
(:func:`gzone.jacobian.class_mean_logit_gradients`). Then σ_c² = (1/KP) Σ_k ‖c_k‖². With
orthogonal c_k of squared length P σ_c², ‖Σ_k c_k δ_k‖ = √P σ_c ‖δ‖ (``slope_exact``); the paper
prints P σ_c² ‖δ‖ (the squared norm's factor, ``slope_paper``). Both are compared with the
least-squares slope through the origin; a third prediction uses the estimated c_k themselves,
√(δᵀ C Cᵀ δ) (no orthogonality). A ``calibration`` record (σ_c², the Gram matrix C Cᵀ, the
slopes) comes first, then one ``prior`` record per prior.

    gzone run icml/gradient-prior
    gzone run icml/gradient-prior --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, data, objective
from gzone.engine import ICML, Claim, Finding, Study
from gzone.engine import setup as engine_setup
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import ModelDataConfig, check_at_least, check_model_data, field
from gzone.engine.summary import as_rows, mean_entropy, spearman, to_float
from gzone.jacobian import class_mean_logit_gradients, logits_of
from gzone.studies.icml._common import LENET5_CIFAR10, LENET300_FASHION, inside


@dataclasses.dataclass(frozen=True)
class Config(ModelDataConfig):
    """Gradient norm vs ‖Q̂ − Q‖ over priors Q ~ Uniform(simplex), Eq. (9)."""

    widths: tuple[int, ...] = field((128, 64), "hidden widths of mlp, e.g. 300,100")
    n_samples: int | None = field(None, "the pool: first N samples of the split (none: all of it)")
    subset_size: int = field(5000, "samples per subset, capped by the smallest class of the pool "
                                   "(noted in the records)")
    n_priors: int = field(200, "class priors Q drawn uniformly from the simplex")
    seed: int = field(0, "seed of the initialisation")
    prior_seed: int = field(0, "seed of the priors and their subsets")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"subset_size": 100, "n_priors": 30},
    "default": {},
    "cpu": {**LENET5_CIFAR10, "subset_size": 1000, "n_priors": 100},
    "paper": {**LENET5_CIFAR10, "subset_size": 5000, "n_priors": 2000},
    "lenet5-cifar10": {**LENET5_CIFAR10, "subset_size": 5000, "n_priors": 2000},
    "lenet300-fashion": {**LENET300_FASHION, "subset_size": 5000, "n_priors": 2000},
}


def validate(config: Config) -> None:
    check_model_data(config)
    check_at_least(config, "n_priors", "subset_size")


@dataclasses.dataclass(frozen=True)
class Pool:
    """The pool of samples, its model, θ0, per-class indices and the subset size (capped by the
    smallest class)."""

    setup: engine_setup.Setup
    data: data.Dataset
    params: Any
    indices: list[np.ndarray]
    subset_size: int


def predicted_slopes(num_params: int, sigma_c2: float) -> dict[str, float]:
    """The slopes of ‖∇ℓ‖ in ‖Q̂ − Q‖ that Eq. (9) predicts with orthogonal c_k of squared length
    P σ_c²: ``slope_exact`` √(P σ_c²), the norm of Σ_k c_k δ_k per unit ‖δ‖, and ``slope_paper``
    P σ_c², the factor the paper prints (that of the squared norm)."""
    return {"slope_exact": math.sqrt(num_params * sigma_c2), "slope_paper": num_params * sigma_c2}


def calibration_record(setup: engine_setup.Setup, config: Config, params: Any,
                       subset_size: int) -> dict[str, Any]:
    """σ_c² on the whole pool from the full-space class means c_k (K, P), their Gram matrix
    C Cᵀ, and the two predicted slopes of Eq. (9) (:func:`predicted_slopes`)."""
    c = class_mean_logit_gradients(setup.model.apply, params, setup.x, chunk_size=config.chunk_size)
    sigma_c2 = to_float(jnp.mean(jnp.square(c)))
    p = setup.num_params
    return {"kind": "calibration", "seed": config.seed, "num_params": p, "n_pool": len(setup.x),
            "n_subset": subset_size, "sigma_c2": sigma_c2,
            "class_mean_gram": np.asarray(c @ c.T, float).tolist(), **predicted_slopes(p, sigma_c2)}


def prepare(config: Config, data_dir: str | None) -> Pool:
    pool = engine_setup.load_data(config.dataset, config.split, config.n_samples, data_dir=data_dir)
    setup = engine_setup.make_setup(config, pool)
    params = engine_setup.init_params(setup, config.init, jax.random.key(config.seed))
    indices = data.class_indices(pool.y, pool.num_classes)
    return Pool(setup, pool, params, indices, min(config.subset_size, min(len(i) for i in indices)))


def calibration(ctx) -> dict[str, Any]:
    """The calibration record: the one already written, else computed from the pool."""
    def make():
        stored = next((r for r in ctx.existing if r.get("kind") == "calibration"), None)
        if stored is not None:
            return stored
        pool, config = ctx.setup, ctx.config
        record = calibration_record(pool.setup, config, pool.params, pool.subset_size)
        if pool.subset_size < config.subset_size:
            smallest = min(len(i) for i in pool.indices)
            record["flags"] = [f"subset_size_capped_to_smallest_class_{smallest}"]
        return record

    return ctx.cached("calibration", make)


def points(config: Config, pool: Pool) -> list[dict[str, Any]]:
    return [{"kind": "calibration"}] + [{"kind": "prior", "prior": i} for i in range(config.n_priors)]


def prior_record(pool: Pool, config: Config, calibration: dict[str, Any], prior_index: int) -> dict:
    """One prior Q ~ Dirichlet(1): its subset, gradient norm, Q̂ − Q and the Eq. (9) predictions."""
    setup = pool.setup
    prior_q = data.sample_prior([config.prior_seed, prior_index], setup.num_classes)
    subset = data.subset_with_prior(pool.data, prior_q, calibration["n_subset"],
                                    seed=[config.prior_seed, prior_index, 1], indices=pool.indices)
    x = jnp.asarray(subset.x, setup.dtype)
    y = jnp.asarray(subset.y, jnp.int32)
    loss, grad = curvature.loss_and_gradient(setup.model.apply, pool.params, x, y,
                                             chunk_size=config.chunk_size)
    p = objective.probs(logits_of(setup.model.apply, pool.params, x))
    delta = np.asarray(p.mean(axis=0), float) - data.class_prior(subset.y, setup.num_classes)
    gap = float(np.linalg.norm(delta))
    gram = np.asarray(calibration["class_mean_gram"], float)
    return {"kind": "prior", "prior": prior_index, "prior_q": np.asarray(prior_q).tolist(),
            "gradient_norm": to_float(jnp.linalg.norm(grad)), "q_gap": gap,
            "loss": to_float(loss), "mean_entropy": mean_entropy(p),
            "predicted_norm_exact": calibration["slope_exact"] * gap,
            "predicted_norm_paper": calibration["slope_paper"] * gap,
            "predicted_norm_means": float(np.sqrt(max(delta @ gram @ delta, 0.0)))}


def measure(ctx, chunk):
    for point in chunk:
        if point["kind"] == "calibration":
            yield [calibration(ctx)]
        else:
            yield [prior_record(ctx.setup, ctx.config, calibration(ctx), point["prior"])]


def _origin_slope(gap: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """Least-squares slope through the origin along the last axis."""
    return np.sum(gap * norm, -1) / np.sum(gap * gap, -1)


def slopes(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Least-squares slope through the origin of ‖∇ℓ‖ on ‖Q̂ − Q‖ with its bootstrap interval
    over priors (``inside.LEVEL``), and its ratio to the predicted slopes √(P σ_c²) (exact
    reading) and P σ_c² (the paper's printed reading), computed from the calibration's σ_c²
    (:func:`predicted_slopes`); R² of the fit, Spearman ρ; the median ratio of the gradient norm
    to the c_k-based prediction √(δᵀCCᵀδ)."""
    cal = next(r for r in records if r.get("kind") == "calibration")
    priors = [r for r in records if r.get("kind") == "prior"]
    gap = inside.finite(r["q_gap"] for r in priors)
    norm = inside.finite(r["gradient_norm"] for r in priors)
    means = inside.finite(r["predicted_norm_means"] for r in priors)
    slope = float(_origin_slope(gap, norm)) if priors else float("nan")
    r2 = 1 - np.sum((norm - slope * gap) ** 2) / np.sum((norm - norm.mean()) ** 2) if priors else np.nan
    predicted = predicted_slopes(cal["num_params"], cal["sigma_c2"])
    return {
        "priors": len(priors), "num_params": cal["num_params"], "n_subset": cal["n_subset"],
        "sigma_c2": cal["sigma_c2"], "fitted_slope": slope,
        "fitted_slope_interval": inside.bootstrap_interval(_origin_slope, gap, norm),
        **predicted,
        "fitted_over_exact": slope / predicted["slope_exact"],
        "fitted_over_paper": slope / predicted["slope_paper"],
        "r2_through_origin": float(r2), "spearman": spearman(gap, norm),
        "median_norm_over_means_prediction": float(np.median(norm / means)) if priors else float("nan"),
        "flags": cal.get("flags", []),
    }


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return as_rows(slopes(records)) if any(r.get("kind") == "calibration" for r in records) else []


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """Gradient norm vs ‖Q̂ − Q‖₂ with the fitted and both predicted slopes."""
    import matplotlib.pyplot as plt

    from gzone.plots import GRADIENT_NORM_LABEL, finish

    fig, ax = plt.subplots(figsize=(5, 3.8))
    priors = [r for r in records if r.get("kind") == "prior"]
    gap = np.array([r["q_gap"] for r in priors], float)
    norm = np.array([r["gradient_norm"] for r in priors], float)
    ax.scatter(gap, norm, s=6, alpha=0.6, color="tab:blue", label="subsets")
    if any(r.get("kind") == "calibration" for r in records):
        s = slopes(records)
        xs = np.linspace(0, gap.max() * 1.05 if gap.size else 1, 50)
        ax.plot(xs, s["fitted_slope"] * xs, color="black", lw=1, label=f"fit {s['fitted_slope']:.3g}")
        ax.plot(xs, s["slope_exact"] * xs, color="tab:green", ls="--",
                label=rf"$\sqrt{{P}}\sigma_c$ = {s['slope_exact']:.3g}")
        ax.plot(xs, s["slope_paper"] * xs, color="tab:red", ls=":",
                label=rf"$P\sigma_c^2$ = {s['slope_paper']:.3g} (as printed)")
    ax.set_ylim(0, max(norm.max() if norm.size else 1, 1e-12) * 1.3)
    ax.set_xlabel(r"$\|\hat Q - Q\|_2$")
    ax.set_ylabel(GRADIENT_NORM_LABEL)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, lw=0.3)
    return finish(fig, title, path_stem, ax)


#: the paper gives no number ("follow a linear trend with the predicted slope", "shockingly
#: well"); the stated tolerance: the fitted slope within a factor 1.25 of √(P σ_c²)
SLOPE_REL_TOL = 0.25
#: a linear trend: R² of the fit through the origin at least this
R2_MIN = 0.8
#: fewer priors than this cannot show a trend
MIN_PRIORS = 10


def check_slope(rows: list[dict[str, Any]]) -> Finding:
    """Eq. (9), Fig. 5 right: the norm grows linearly in ‖Q̂ − Q‖ (R² through the origin ≥
    ``R2_MIN``) with the slope √(P σ_c²) — the norm of Σ_k c_k δ_k for orthogonal c_k of squared
    length P σ_c², recomputed here from the summary's σ_c² and P: the bootstrap interval of
    fitted / predicted lies within [1/(1 + tol), 1 + tol]. Not reproduced when it lies entirely
    outside or R² is lower; inconclusive when it straddles an edge or with too few priors."""
    q = inside.quantities(rows)
    band = (1 / (1 + SLOPE_REL_TOL), 1 + SLOPE_REL_TOL)
    expected = (f"fitted slope / sqrt(P sigma_c^2) in [{band[0]:.3f}, {band[1]:.3f}] "
                f"({inside.LEVEL:.0%} bootstrap interval over priors); R^2 >= {R2_MIN}; "
                f">= {MIN_PRIORS} priors")
    needed = [q.get(k) for k in ("num_params", "sigma_c2", "fitted_slope", "r2_through_origin")]
    interval = q.get("fitted_slope_interval")
    if any(v is None or not np.isfinite(v) for v in needed) or interval is None or needed[1] <= 0:
        return Finding(INCONCLUSIVE, {"priors": q.get("priors")}, expected)
    num_params, sigma_c2, fitted, r2 = needed
    predicted = predicted_slopes(num_params, sigma_c2)
    ratio = [v / predicted["slope_exact"] for v in interval]
    measured = {"priors": q.get("priors"), "fitted_slope": fitted,
                "predicted_slope": predicted["slope_exact"],
                "printed_slope_p_sigma_c2": predicted["slope_paper"],
                "fitted_over_predicted": fitted / predicted["slope_exact"],
                "fitted_over_predicted_interval": ratio, "r2_through_origin": r2}
    side = inside.against(ratio, *band)
    if (q.get("priors") or 0) < MIN_PRIORS:
        return Finding(INCONCLUSIVE, measured, expected)
    if r2 < R2_MIN or side == "outside":
        return Finding(NOT_REPRODUCED, measured, expected)
    return Finding(REPRODUCED if side == "inside" else INCONCLUSIVE, measured, expected)


STUDY = Study(
    name="icml/gradient-prior", paper=ICML, reproduces="Fig. 5 right, Eq. (9)",
    title="gradient norm against ||Q_hat - Q|| over random class priors, and Eq. (9)'s slope",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"calibration": (), "prior": ("prior",)}, growable=("n_priors",), legacy={"match": {"study": "fig5-right"}},
    claims=(Claim("slope", "Fig. 5 right; Eq. (9)",
                  "The full-batch gradient norm of LeNet-5 on CIFAR-10 subsets grows linearly in "
                  "||Q_hat - Q|| with the slope sqrt(P sigma_c^2) = ||c_k|| of Eq. (9) "
                  "(orthogonal class means; the paper prints P sigma_c^2, the factor of the "
                  "squared norm).",
                  check_slope, scales=("cpu", "paper")),),
    doc=__doc__)
