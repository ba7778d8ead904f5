"""ICML Fig. 3: the positive curvature of the true G-term against the random-model prediction
E G_* of Eq. (8), across the initialization scale α.

Notation (paper Sec. 4): per sample μ, J_μ R (K, d) are the logit gradients in a random d-dim
subspace (orthonormal R); c_k = E_μ ∇θ z_k(x_μ) are their class means and e_k^μ the residuals;
σ_c², σ_e² their per-coordinate variances (:func:`gzone.random_model.logit_gradient_stats`). At
each (seed, α) a ``point`` record holds Tr/‖·‖_F of the true projected G-term
(:func:`gzone.curvature.projected`) and of the Hessian, and Eq. (8) with σ's estimated from J R
and the real softmax outputs.

*σ's at each α vs once.* For a homogeneous bias-free model J(αθ) = α^(L−1) J(θ), so σ_c² and σ_e²
both scale by α^(2L−2); Eq. (8) is homogeneous of degree 0 in (σ_c², σ_e²) jointly, so estimating
the σ's at each α (as the paper does, ``predicted_positive_curvature``) and once at α = 1
(``..._unit``) give the same prediction up to float rounding. ``..._means`` is a diagnostic that
keeps the estimated class means c_k (Eq. 7, first line) and only assumes isotropic residuals.

    gzone run icml/gterm-prediction
    gzone run icml/gterm-prediction --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from gzone import curvature, models, objective, random_model, subspace
from gzone.engine import ICML, Claim, Finding, Study
from gzone.engine import setup as engine_setup
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import (
    ModelDataConfig,
    check_at_least,
    check_choice,
    check_model_data,
    check_positive,
    check_range,
    field,
)
from gzone.engine.summary import mean_entropy, median_band, positive_curvature, spearman, to_float
from gzone.jacobian import logit_tangents
from gzone.studies.icml._common import LENET5_CIFAR10, LENET300_FASHION, inside

FIELDS = ("seed", "alpha", "dim", "n_samples", "mean_entropy", "gterm_positive_curvature",
          "hessian_positive_curvature", "predicted_positive_curvature",
          "predicted_positive_curvature_unit", "predicted_positive_curvature_means", "sigma_c2",
          "sigma_e2", "gamma_p", "loss")


@dataclasses.dataclass(frozen=True)
class Config(ModelDataConfig):
    """True G-term curvature vs Eq. (8) across α (d-dim subspace, several seeds)."""

    n_samples: int = field(300, "first N samples of the split")
    widths: tuple[int, ...] = field((128, 64), "hidden widths of mlp, e.g. 300,100")
    dim: int = field(50, "subspace dimension d (at least the number of classes K)")
    seeds: int = field(3, "number of seeds (0..N-1): theta0 and the basis of each")
    basis: str = field("orthonormal", "random subspace basis", subspace.BASIS_KINDS)
    alpha_min: float = field(1e-2, "smallest initialisation scale alpha of the grid")
    alpha_max: float = field(1e1, "largest initialisation scale alpha of the grid")
    num_points: int = field(10, "grid points of alpha (geometric)")
    unbiased: bool = field(False, "Bessel/mean corrections of the sigma estimates "
                                  "(random_model.logit_gradient_stats)")


_GRID = {"dim": 50, "seeds": 3, "num_points": 21, "alpha_min": 1e-2, "alpha_max": 1e2}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (32, 16), "n_samples": 200, "dim": 10, "seeds": 2, "num_points": 5,
             "alpha_min": 0.1, "alpha_max": 3.0},
    "default": {},
    "cpu": {**LENET300_FASHION, **_GRID, "n_samples": 1000, "num_points": 13},
    "paper": {**LENET300_FASHION, **_GRID, "n_samples": 10000},
    "lenet300-fashion": {**LENET300_FASHION, **_GRID, "n_samples": 10000},
    "lenet5-cifar10": {**LENET5_CIFAR10, **_GRID, "n_samples": 3000},
}


def validate(config: Config) -> None:
    check_model_data(config)
    check_positive(config, "alpha_min", "alpha_max")
    check_range(config, "alpha_min", "alpha_max")
    check_at_least(config, "seeds", "num_points", "dim")
    check_choice(config, "basis", subspace.BASIS_KINDS)


def prepare(config: Config, data_dir: str | None) -> engine_setup.Setup:
    data = engine_setup.load_data(config.dataset, config.split, config.n_samples,
                                  data_dir=data_dir)
    setup = engine_setup.make_setup(config, data)
    engine_setup.check_dim(setup, config.dim, min_classes=True)
    return setup


def alphas(config: Config) -> list[float]:
    """The α grid (geometric)."""
    return np.geomspace(config.alpha_min, config.alpha_max, config.num_points).tolist()


def points(config: Config, setup: engine_setup.Setup) -> list[dict[str, Any]]:
    return [{"kind": "point", "seed": s, "alpha": a} for s in range(config.seeds)
            for a in alphas(config)]


def point_record(setup: engine_setup.Setup, config: Config, params: Any, basis: Any, seed: int,
                 alpha: float, unit_sigmas: tuple[float, float],
                 batches: curvature.Batches) -> dict[str, Any]:
    """True G-term curvature and Eq. (8) at αθ0 for one seed (module docstring)."""
    scaled = models.scale(params, alpha)
    proj = curvature.projected(setup.model.apply, scaled, basis, batches)
    logits, jr = logit_tangents(setup.model.apply, scaled, basis, batches)
    p = objective.probs(logits)
    stats, eq8 = inside.eq8_prediction(p, jr, unbiased=config.unbiased)
    d = basis.shape[1]
    m = random_model.psd_softmax_hessian(p)
    means_model = (stats.class_means.T @ m @ stats.class_means
                   + jnp.trace(m) * stats.sigma_e2 * jnp.eye(d, dtype=m.dtype))
    return {
        "kind": "point", "seed": seed, "alpha": alpha, "dim": d, "n_samples": len(setup.x),
        "mean_entropy": mean_entropy(p),
        "gterm_positive_curvature": positive_curvature(proj.gterm),
        "hessian_positive_curvature": positive_curvature(proj.hessian),
        "predicted_positive_curvature": eq8["predicted_positive_curvature"],
        "predicted_positive_curvature_unit": to_float(random_model.expected_gterm_curvature(
            p, unit_sigmas[0], unit_sigmas[1], d)),
        "predicted_positive_curvature_means": positive_curvature(means_model),
        "sigma_c2": eq8["sigma_c2"], "sigma_e2": eq8["sigma_e2"], "gamma_p": eq8["gamma_p"],
        "loss": to_float(proj.loss),
    }


def _seed_state(ctx, seed: int) -> tuple[Any, Any, tuple[float, float]]:
    """θ0, R and the σ's at α = 1 of one seed."""
    config, setup = ctx.config, ctx.setup
    params, basis = engine_setup.seed_state(setup, seed, dim=config.dim, basis=config.basis,
                                            init=config.init)
    batches = ctx.cached("batches", lambda: curvature.prepare_batches(
        setup.model.apply, params, setup.x, setup.y, config.chunk_size, num_tangents=config.dim))
    _, jr = logit_tangents(setup.model.apply, params, basis, batches)
    stats = random_model.logit_gradient_stats(jr, unbiased=config.unbiased)
    return params, basis, (to_float(stats.sigma_c2), to_float(stats.sigma_e2))


def measure(ctx, chunk):
    for point in chunk:
        seed = point["seed"]
        params, basis, unit = ctx.cached(("seed", seed), lambda seed=seed: _seed_state(ctx, seed))
        yield [point_record(ctx.setup, ctx.config, params, basis, seed, point["alpha"], unit,
                            ctx.state["batches"])]


def _values(records: list[dict[str, Any]], name: str) -> np.ndarray:
    return np.array([np.nan if r[name] is None else r[name] for r in records], float)


def gaps(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How well Eq. (8) follows the true G-term: the mean absolute gap over all defined (seed, α)
    points (also relative to the true value, separately for α ≤ 1 and α > 1 — the pre-collapse
    regime, where one sample owns the G-term and Eq. (8) cannot follow it down to 1 — and over
    the seed medians), its largest value, the gap of the class-means diagnostic, the largest
    relative difference between σ's estimated at each α and at α = 1, and the Spearman
    correlation of the true curvature with the mean entropy."""
    recs = [r for r in records if r.get("kind") == "point"]
    true, pred = _values(recs, "gterm_positive_curvature"), _values(recs, "predicted_positive_curvature")
    unit, means = _values(recs, "predicted_positive_curvature_unit"), _values(recs, "predicted_positive_curvature_means")
    ok = np.isfinite(true) & np.isfinite(pred)
    gap = np.abs(true - pred)[ok]
    ok_means, ok_unit = np.isfinite(true) & np.isfinite(means), np.isfinite(unit) & np.isfinite(pred)
    alpha = np.array([r["alpha"] for r in recs], float)

    def gap_where(mask):
        sel = ok & mask
        return float(np.abs(true - pred)[sel].mean()) if sel.any() else float("nan")

    def by_alpha(name):
        table: dict[float, list] = {}
        for r in recs:
            table.setdefault(r["alpha"], []).append(r[name])
        return median_band(table)[1]

    med_true, med_pred = by_alpha("gterm_positive_curvature"), by_alpha("predicted_positive_curvature")
    both = np.isfinite(med_true) & np.isfinite(med_pred)
    nan = float("nan")
    return {
        "points": len(recs), "defined_points": int(ok.sum()),
        "mean_abs_gap": float(gap.mean()) if gap.size else nan,
        "max_abs_gap": float(gap.max()) if gap.size else nan,
        "mean_rel_gap": float((gap / true[ok]).mean()) if gap.size else nan,
        "mean_abs_gap_alpha_le_1": gap_where(alpha <= 1 + 1e-9),
        "mean_abs_gap_alpha_gt_1": gap_where(alpha > 1 + 1e-9),
        "mean_abs_gap_of_medians": float(np.abs(med_true - med_pred)[both].mean()) if both.any() else nan,
        "mean_abs_gap_class_means_model": float(np.abs(true - means)[ok_means].mean())
        if ok_means.any() else nan,
        "max_rel_diff_sigma_each_vs_unit": float(np.max(np.abs(unit - pred)[ok_unit] / pred[ok_unit]))
        if ok_unit.any() else nan,
        "spearman_entropy_vs_gterm_curvature": spearman(_values(recs, "mean_entropy")[ok], true[ok]),
    }


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per α, medians over seeds: mean entropy, the true G-term's and the Hessian's positive
    curvature, Eq. (8), the gap between the true value and Eq. (8), that gap relative to the
    true value (``rel_gap``) and the largest relative gap of one seed (``rel_gap_max``)."""
    by: dict[float, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("kind") == "point":
            by.setdefault(r["alpha"], []).append(r)
    rows = []
    for alpha, group in sorted(by.items()):
        def med(name, group=group):
            v = _values(group, name)
            v = v[np.isfinite(v)]
            return float(np.median(v)) if v.size else None
        true, pred = med("gterm_positive_curvature"), med("predicted_positive_curvature")
        seed_gaps = [g for r in group if (g := inside.relative_gap(
            r["gterm_positive_curvature"], r["predicted_positive_curvature"])) is not None]
        rows.append({"alpha": alpha, "seeds": len(group), "mean_entropy": med("mean_entropy"),
                     "gterm_pc": true, "eq8_pc": pred, "hessian_pc": med("hessian_positive_curvature"),
                     "gap": None if true is None or pred is None else abs(true - pred),
                     "rel_gap": inside.relative_gap(true, pred),
                     "rel_gap_max": max(seed_gaps) if seed_gaps else None})
    return rows


#: fewer α points with both values than this cannot show Eq. (8) "across model confidence levels"
MIN_ALPHAS = 3


def check_eq8(rows: list[dict[str, Any]]) -> Finding:
    """Fig. 3: at every α of the grid where both are defined, the seeds' median positive
    curvature of E G_* (Eq. 8) lies within ``inside.EQ8_REL_TOL`` of the true G-term's, relative
    to the true value. Inconclusive with fewer than ``MIN_ALPHAS`` such α, or when the medians
    agree but some seed does not."""
    tol = inside.EQ8_REL_TOL
    expected = (f"|Eq. (8) - true PC(G)| <= {tol} x true PC(G) at every alpha (seed medians), "
                f"at least {MIN_ALPHAS} alphas")
    both = [r for r in rows if r.get("rel_gap") is not None]
    if len(both) < MIN_ALPHAS:
        return Finding(INCONCLUSIVE, {"alphas": len(both)}, expected)
    worst = max(both, key=lambda r: r["rel_gap"])

    def largest(keep):
        gaps = [r["rel_gap"] for r in both if keep(r["alpha"])]
        return max(gaps) if gaps else None

    measured = {"alphas": len(both), "max_rel_gap": worst["rel_gap"], "alpha_of_max": worst["alpha"],
                "max_rel_gap_alpha_le_1": largest(lambda a: a <= 1 + 1e-9),
                "max_rel_gap_alpha_gt_1": largest(lambda a: a > 1 + 1e-9),
                "true_pc": [r["gterm_pc"] for r in both], "eq8_pc": [r["eq8_pc"] for r in both],
                "alpha": [r["alpha"] for r in both]}
    if worst["rel_gap"] > tol:
        return Finding(NOT_REPRODUCED, measured, expected)
    seeds_agree = all(r["rel_gap_max"] is not None and r["rel_gap_max"] <= tol for r in both)
    return Finding(REPRODUCED if seeds_agree else INCONCLUSIVE, measured, expected)


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """Positive curvature of the true G-term and of E G (Eq. 8) vs α, median and min/max bands
    over seeds (left; dashed: the class-means diagnostic), and every (seed, α) point against its
    mean softmax entropy (right)."""
    import matplotlib.pyplot as plt

    from gzone.plots import ALPHA_LABEL, ENTROPY_LABEL, POSITIVE_CURVATURE_LABEL, finish

    recs = [r for r in records if r.get("kind") == "point"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    styles = (("gterm_positive_curvature", "true G-term $G_*$", "tab:blue", "-"),
              ("predicted_positive_curvature", r"$\mathbb{E}G_*$, Eq. (8)", "tab:orange", "-"),
              ("predicted_positive_curvature_means", r"Eq. (7) with estimated $c_k$", "grey", "--"))
    for name, label, color, ls in styles if recs else ():
        table: dict[float, list] = {}
        for r in recs:
            table.setdefault(r["alpha"], []).append(r[name])
        xs, med, low, high = median_band(table)
        axes[0].plot(xs, med, marker="o", ms=3, color=color, ls=ls, label=label)
        if ls == "-":
            axes[0].fill_between(xs, low, high, color=color, alpha=0.25, lw=0)
            axes[1].scatter([r["mean_entropy"] for r in recs], _values(recs, name), s=10,
                            color=color, label=label)
    axes[0].set_xscale("log")
    axes[0].set_xlabel(ALPHA_LABEL)
    axes[1].set_xlabel(ENTROPY_LABEL)
    for ax in axes:
        ax.set_ylabel(POSITIVE_CURVATURE_LABEL)
        ax.grid(alpha=0.3, lw=0.3)
        ax.legend(fontsize=8)
    return finish(fig, title, path_stem)


STUDY = Study(
    name="icml/gterm-prediction", paper=ICML, reproduces="Fig. 3, Eq. (8)",
    title="positive curvature of the true G-term against the random model's Eq. (8) across alpha",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure, done={"point": ("seed", "alpha")},
    growable=("seeds", "num_points"), legacy={"match": {"study": "fig3"}},
    claims=(Claim("eq8", "Fig. 3; Eq. (8)",
                  "The positive curvature of the expected G-term of the random model, Eq. (8) with "
                  "sigma_c^2, sigma_e^2 estimated from the logit gradients, approximates that of "
                  "the true G-term at every initialization scale alpha.", check_eq8),),
    doc=__doc__)
