"""ICML Fig. 3: the true G-term curvature against the random-model prediction Eq. (8) across α.

Notation (paper Sec. 4): per sample μ, J_μ R (K, d) are the logit gradients in a random d-dim
subspace (orthonormal R, (P, d)); c_k = E_μ ∇θ z_k(x_μ) are their class means ("logit gradient
means") and e_k^μ the residuals; σ_c², σ_e² are their per-coordinate variances
(:func:`gzone.random_model.logit_gradient_stats`).

Positive curvature Tr/‖·‖_F of the true projected G-term (``curvature.projected``) against
Eq. (8) with σ's estimated from J R (N, K, d) and the real softmax outputs, across α.

*σ's at each α vs once.* For a homogeneous bias-free model J(αθ) = α^(L-1) J(θ), so σ_c² and σ_e²
both scale by α^(2L-2); Eq. (8) is homogeneous of degree 0 in (σ_c², σ_e²) jointly, so estimating
the σ's at each α (as the paper does) and estimating them once at α = 1 give the same prediction.
Both are recorded (``predicted_positive_curvature``, ``..._unit``); their difference is float
rounding (checked in the tests and reported by :func:`summarize`).

Records (kind ``point``, one per (seed, α)): ``RECORD_FIELDS``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, models, objective, random_model, results, subspace
from gzone.experiments import base
from gzone.experiments.base import ModelDataConfig, Progress, Record, Setup
from gzone.jacobian import logit_tangents

NAME = "fig3"
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "point": ("seed", "alpha", "dim", "n_samples", "mean_entropy", "gterm_positive_curvature",
              "hessian_positive_curvature", "predicted_positive_curvature",
              "predicted_positive_curvature_unit", "predicted_positive_curvature_means", "sigma_c2",
              "sigma_e2", "gamma_p", "loss"),
}


@dataclasses.dataclass(frozen=True)
class Fig3Config(ModelDataConfig):
    """Fig. 3: true G-term curvature vs Eq. (8) across α (d-dim subspace, several seeds)."""

    n_samples: int = 300
    widths: tuple[int, ...] = (128, 64)
    dim: int = 50
    seeds: int = 3
    basis: str = dataclasses.field(default="orthonormal", metadata={
        "help": "random subspace basis", "choices": subspace.BASIS_KINDS})
    alpha_min: float = 1e-2
    alpha_max: float = 1e1
    num_points: int = 10
    unbiased: bool = dataclasses.field(default=False, metadata={
        "help": "Bessel/mean corrections of the sigma estimates (logit_gradient_stats)"})

    EXTENDABLE: ClassVar[tuple[str, ...]] = ("seeds", "num_points")
    STUDY: ClassVar[str] = NAME


def validate(config: Fig3Config) -> None:
    """Reject bad configurations with one-line messages that name the fix."""
    base.check_model_data(config)
    base.check_positive(config, "alpha_min", "alpha_max")
    base.check_range(config, "alpha_min", "alpha_max")
    base.check_at_least(config, "seeds", "num_points", "dim")
    base.check_choice(config, "basis", subspace.BASIS_KINDS)


def fig3_point(
    setup: Setup,
    config: Fig3Config,
    params: Any,
    basis: jax.Array,
    seed: int,
    alpha: float,
    unit_sigmas: tuple[float, float],
    batches: curvature.Batches | None = None,
) -> Record:
    """True G-term curvature (``curvature.projected``) and Eq. (8) at αθ0 for one seed.

    Eq. (8) uses the softmax outputs at α and σ's estimated from J R at α
    (``predicted_positive_curvature``) or at α = 1 (``..._unit``). A diagnostic between the two:
    ``..._means`` keeps the *estimated* class means c_k (not orthogonal, unequal norms) and only
    the isotropic-residual assumption, Tr/‖·‖_F of Cᵀ M C + Tr(M) σ_e² I_d (Eq. 7, first line).
    ``batches``: the data laid out once for d tangents (:func:`prepare_batches`)."""
    scaled = models.scale(params, alpha)
    if batches is None:
        batches = prepare_batches(setup, config, params)
    proj = curvature.projected(setup.model.apply, scaled, basis, batches)
    logits, jr = logit_tangents(setup.model.apply, scaled, basis, batches)
    p = objective.probs(logits)
    stats = random_model.logit_gradient_stats(jr, unbiased=config.unbiased)
    d = basis.shape[1]
    m = random_model.psd_softmax_hessian(p)
    means_model = (stats.class_means.T @ m @ stats.class_means
                   + jnp.trace(m) * stats.sigma_e2 * jnp.eye(d, dtype=m.dtype))
    return {
        "seed": seed, "alpha": alpha, "dim": d, "n_samples": len(setup.x),
        "mean_entropy": base.mean_entropy(p),
        "gterm_positive_curvature": base.positive_curvature(proj.gterm),
        "hessian_positive_curvature": base.positive_curvature(proj.hessian),
        "predicted_positive_curvature": base.to_float(random_model.expected_gterm_curvature(
            p, stats.sigma_c2, stats.sigma_e2, d)),
        "predicted_positive_curvature_unit": base.to_float(random_model.expected_gterm_curvature(
            p, unit_sigmas[0], unit_sigmas[1], d)),
        "predicted_positive_curvature_means": base.positive_curvature(means_model),
        "sigma_c2": base.to_float(stats.sigma_c2), "sigma_e2": base.to_float(stats.sigma_e2),
        "gamma_p": base.to_float(random_model.gamma_p(p)), "loss": base.to_float(proj.loss),
    }


def prepare_batches(setup: Setup, config: Fig3Config, params: Any) -> curvature.Batches:
    """The samples laid out once for passes with d tangents (``config.chunk_size`` or automatic)."""
    return curvature.prepare_batches(setup.model.apply, params, setup.x, setup.y,
                                     config.chunk_size, num_tangents=config.dim)


def run(
    config: Fig3Config, out_dir: str | Path, *, data_dir: str | None = None,
    progress: Progress | None = None,
) -> list[Record]:
    """Fig. 3, resumable per (seed, α). Returns all records of ``out_dir``."""
    validate(config)
    setup = base.make_setup(config, base.load_data(config.dataset, config.split, config.n_samples,
                                                   data_dir=data_dir))
    base.check_dim(setup, config.dim, min_classes=True)
    existing = base.open_results(config, out_dir)
    done = {(r["seed"], r["alpha"]) for r in existing}
    todo = [(s, a) for s in range(config.seeds) for a in base.alpha_grid(config)
            if (s, a) not in done]
    states: dict[int, tuple] = {}
    batches = None
    for seed, alpha in base.iterate(todo, progress):
        if seed not in states:
            params, basis = base.seed_state(setup, seed, dim=config.dim, basis=config.basis,
                                            init=config.init)
            if batches is None:
                batches = prepare_batches(setup, config, params)
            _, jr = logit_tangents(setup.model.apply, params, basis, batches)
            stats = random_model.logit_gradient_stats(jr, unbiased=config.unbiased)
            states[seed] = (params, basis, (base.to_float(stats.sigma_c2),
                                            base.to_float(stats.sigma_e2)))
        params, basis, unit = states[seed]
        record = fig3_point(setup, config, params, basis, seed, alpha, unit, batches)
        results.append_records(out_dir, [base.tag(NAME, "point", record)])
    return base.load(out_dir)


def _by(records: list[Record], key: str, value: str) -> dict[float, np.ndarray]:
    """{record[key]: array of record[value] (None -> NaN)}, sorted by key."""
    table: dict[float, list[float]] = {}
    for r in records:
        table.setdefault(r[key], []).append(np.nan if r[value] is None else r[value])
    return {k: np.asarray(v, float) for k, v in sorted(table.items())}


def _band(table: dict[float, np.ndarray]) -> tuple[np.ndarray, ...]:
    """(keys, median, min, max) over the finite values of each row of a :func:`_by` table."""
    xs = np.array(list(table))
    rows = [v[np.isfinite(v)] for v in table.values()]
    stat = [(np.median(v), v.min(), v.max()) if v.size else (np.nan,) * 3 for v in rows]
    med, low, high = (np.array(s) for s in zip(*stat))
    return xs, med, low, high


def summarize(records: list[Record]) -> dict[str, Any]:
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
        "spearman_entropy_vs_gterm_curvature": base.spearman(entropy[ok], true[ok]),
    }
