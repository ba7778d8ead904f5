"""ICML Fig. 4 right: Γ_p⁻² (Eq. 10) against the softmax entropy, with the limits of Eq. (11).

``n_sets`` logit sets z (a Kaiming model's logits of the first ``n_sets`` samples, or N(0, std²)
draws) are scaled by every α of a grid; per set and α a ``set`` record holds the softmax entropy
and Γ_p of diag(p) − ppᵀ, and per α a ``batch`` record Γ_p⁻² of the set-averaged matrix (the
paper's red curve). Γ_p ∈ [1, √(K−1)]: Γ_p⁻² = 1/(K−1) at uniform p, → 1 at collapse (Eq. 11).
Cheap: everything is computed in one go.

    gzone run icml/gamma-entropy
    gzone run icml/gamma-entropy --source gaussian
    gzone run icml/gamma-entropy --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import metrics, objective, random_model
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
from gzone.engine.summary import as_rows, spearman
from gzone.studies.icml._common import LENET5_CIFAR10, LENET300_FASHION, inside

SOURCES = ("model", "gaussian")


@dataclasses.dataclass(frozen=True)
class Config(ModelDataConfig):
    """Γ_p⁻² vs softmax entropy of ``n_sets`` logit sets scaled by α."""

    source: str = field("model", "model: logits of the first n_sets samples; gaussian: "
                                 "N(0, logit_std^2) logits", SOURCES)
    n_sets: int = field(30, "logit sets (samples of the model, or gaussian draws)")
    seed: int = field(0, "seed of theta0 (model) or of the gaussian logits")
    logit_std: float = field(1.0, "standard deviation of the gaussian logits (source gaussian)")
    num_classes: int = field(10, "classes K of the gaussian logits (source gaussian only)")
    alpha_min: float = field(1e-2, "smallest logit scale alpha of the grid")
    alpha_max: float = field(1e2, "largest logit scale alpha of the grid")
    num_points: int = field(81, "grid points of alpha (geometric)")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (32, 16), "n_sets": 10, "num_points": 25},
    "default": {},
    "cpu": {**LENET300_FASHION},
    "paper": {**LENET300_FASHION},
    "gaussian": {"source": "gaussian"},
    "lenet300-fashion": {**LENET300_FASHION},
    "lenet5-cifar10": {**LENET5_CIFAR10},
}


def validate(config: Config) -> None:
    check_model_data(config)
    check_positive(config, "alpha_min", "alpha_max", "logit_std")
    check_range(config, "alpha_min", "alpha_max")
    check_at_least(config, "n_sets", "num_points")
    check_at_least(config, "num_classes", minimum=2)
    check_choice(config, "source", SOURCES)


def prepare(config: Config, data_dir: str | None) -> jax.Array:
    """The logit sets: a Kaiming model's logits of the first ``n_sets`` samples, or N(0, std²)."""
    if config.source == "gaussian":
        rng = np.random.default_rng(config.seed)
        z = rng.normal(0.0, config.logit_std, (config.n_sets, config.num_classes))
        return jnp.asarray(z, jnp.dtype(config.dtype))
    setup = engine_setup.make_setup(config, engine_setup.load_data(
        config.dataset, config.split, config.n_sets, data_dir=data_dir))
    params = engine_setup.init_params(setup, config.init, jax.random.key(config.seed))
    return setup.model.apply(params, setup.x)


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


def points(config: Config, logits: jax.Array) -> list[dict[str, Any]]:
    return [{"kind": "batch"}]  # one point: the whole grid, written at once


def measure(ctx, chunk):
    config = ctx.config
    alphas = np.geomspace(config.alpha_min, config.alpha_max, config.num_points).tolist()
    entropy, gamma, batch_entropy, batch_gamma = gamma_curves(ctx.setup, alphas)
    records = []
    for i, alpha in enumerate(alphas):
        for s in range(entropy.shape[1]):
            records.append({"kind": "set", "set": s, "alpha": alpha, "entropy": float(entropy[i, s]),
                            "gamma_p": float(gamma[i, s]), "gamma_p_inv2": float(gamma[i, s] ** -2)})
        records.append({"kind": "batch", "set": -1, "alpha": alpha,
                        "entropy": float(batch_entropy[i]), "gamma_p": float(batch_gamma[i]),
                        "gamma_p_inv2": float(batch_gamma[i] ** -2)})
    yield records


def curves(records: list[dict[str, Any]], kind: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{set: (entropies, Γ_p⁻²)} of the records of ``kind`` (None -> NaN)."""
    out: dict[int, list] = {}
    for r in records:
        if r.get("kind") == kind:
            out.setdefault(r["set"], []).append(
                (r["entropy"], np.nan if r["gamma_p_inv2"] is None else r["gamma_p_inv2"]))
    return {s: tuple(np.array(v, float).T) for s, v in out.items()}


#: a logit set counts as collapsed once its softmax entropy falls to this (nats): then Γ_p⁻²
#: sits at an Eq. (11) limit (App. C)
COLLAPSED_ENTROPY = 1e-3


def classes_from_entropy(records: list[dict[str, Any]]) -> int | None:
    """K read from the highest entropy of the records, log K at uniform p (the grid's smallest
    α); None unless exp(entropy) is within 1 % of an integer (the grid does not reach uniform
    p)."""
    entropies = [r["entropy"] for r in records if r.get("kind") in ("set", "batch")
                 and r.get("entropy") is not None]
    if not entropies:
        return None
    k = float(np.exp(max(entropies)))
    return int(round(k)) if round(k) >= 2 and abs(k - round(k)) <= 0.01 * round(k) else None


def monotonicity(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Spearman correlation of Γ_p⁻² with entropy per logit set (monotone decrease ⇒ −1), and
    Γ_p⁻² at the highest and lowest entropy reached (1/(K−1) at uniform p; → 1 at collapse);
    K (:func:`classes_from_entropy`), the smallest and largest Γ_p of all sets and the batch,
    and Γ_p⁻² of each set whose entropy falls to ``COLLAPSED_ENTROPY`` at its lowest entropy."""
    sets = curves(records, "set")
    rhos = np.array([spearman(h, g) for h, g in sets.values()])
    batch = curves(records, "batch").get(-1)
    ok = np.isfinite(batch[1]) if batch else None
    nan = float("nan")
    gammas = np.array([r["gamma_p"] for r in records if r.get("kind") in ("set", "batch")
                       and r.get("gamma_p") is not None], float)
    collapsed = []
    for h, g in sets.values():
        fine = np.isfinite(g)
        if fine.any() and h[fine].min() <= COLLAPSED_ENTROPY:
            collapsed.append(float(g[fine][np.argmin(h[fine])]))
    return {
        "sets": len(sets),
        "spearman_median": float(np.nanmedian(rhos)), "spearman_max": float(np.nanmax(rhos)),
        "fraction_decreasing": float(np.mean(rhos < 0)),
        "batch_spearman": spearman(*batch) if batch else nan,
        "batch_gamma_inv2_at_max_entropy": float(batch[1][ok][np.argmax(batch[0][ok])]) if batch else nan,
        "batch_gamma_inv2_at_min_entropy": float(batch[1][ok][np.argmin(batch[0][ok])]) if batch else nan,
        "num_classes": classes_from_entropy(records),
        "gamma_p_min": float(gammas.min()) if gammas.size else nan,
        "gamma_p_max": float(gammas.max()) if gammas.size else nan,
        "collapsed_gamma_inv2": collapsed,
    }


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return as_rows(monotonicity(records))


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """Γ_p⁻² vs entropy, one pink curve per logit set, red for the set-averaged matrix."""
    import matplotlib.pyplot as plt

    from gzone.plots import finish

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for h, g in curves(records, "set").values():
        ax.plot(h, g, color="tab:pink", alpha=0.5, lw=1)
    batch = curves(records, "batch").get(-1)
    if batch:
        ax.plot(*batch, color="red", lw=2, label="average matrix")
        ax.legend(fontsize=8)
    ax.set_xlabel(r"softmax entropy $\mathbb{H}(p)$ (nats)")
    ax.set_ylabel(r"$\Gamma_p^{-2}$")
    ax.grid(alpha=0.3, lw=0.3)
    return finish(fig, title, path_stem, ax)


#: relative float32 slack on Γ_p ∈ [1, √(K−1)] (Sec. 4: positive curvature of a rank-(K−1) PSD matrix)
BOUND_TOL = 1e-4
#: "Γ_p is, in fact, monotonic ... with respect to the entropy of p" (Sec. 4): every curve's
#: Spearman ρ(entropy, Γ_p⁻²) at most −0.9 (float32 noise near uniform p breaks exact ties)
MONOTONE_RHO = -0.9
#: slack on the limits: Γ_p⁻² = 1/(K−1) at uniform p (relative), → 1 at collapse (absolute)
LIMIT_TOL = 0.05


def eq11_floor(k: int) -> float:
    """The smallest limit of Γ_p⁻² at collapse, Eq. (11) with S = K: (K + 2) / (4 (K − 1)) (a
    collapsing p with S non-zero entries ends at or above (S + 2) / (4 (S − 1)) ≥ this)."""
    return (k + 2) / (4 * (k - 1))


def check_gamma(rows: list[dict[str, Any]]) -> Finding:
    """Fig. 4 right, Eq. (10), (11): every Γ_p lies in [1, √(K−1)]; Γ_p⁻² falls monotonically as
    the entropy rises (every set's and the batch's Spearman ρ ≤ ``MONOTONE_RHO``); at the uniform
    end the batch's Γ_p⁻² is 1/(K−1); the sets that collapse end at or above the S = K limit of
    Eq. (11) and, in the median, at its S = 2 limit 1. Inconclusive when K cannot be read (the
    grid does not reach uniform p) or no set collapses."""
    q = inside.quantities(rows)
    expected = (f"1 <= Gamma_p <= sqrt(K-1) (rel. {BOUND_TOL}); Spearman(entropy, Gamma_p^-2) <= "
                f"{MONOTONE_RHO} for every set and the batch; batch Gamma_p^-2 = 1/(K-1) at max "
                f"entropy (rel. {LIMIT_TOL}); collapsed sets (entropy <= {COLLAPSED_ENTROPY}) end "
                f">= (K+2)/(4(K-1)), median >= 1 - {LIMIT_TOL}")
    k, collapsed = q.get("num_classes"), q.get("collapsed_gamma_inv2") or []
    measured = {key: q.get(key) for key in (
        "num_classes", "gamma_p_min", "gamma_p_max", "spearman_max", "batch_spearman",
        "batch_gamma_inv2_at_max_entropy")}
    measured.update(collapsed_sets=len(collapsed),
                    collapsed_gamma_inv2_median=float(np.median(collapsed)) if collapsed else None,
                    collapsed_gamma_inv2_min=min(collapsed) if collapsed else None)
    values = [q.get(key) for key in ("gamma_p_min", "gamma_p_max", "spearman_max",
                                     "batch_spearman", "batch_gamma_inv2_at_max_entropy")]
    if k is None or any(v is None or not np.isfinite(v) for v in values):
        return Finding(INCONCLUSIVE, measured, expected)
    g_min, g_max, rho, rho_batch, uniform = values
    holds = (g_min >= 1 - BOUND_TOL and g_max <= np.sqrt(k - 1) * (1 + BOUND_TOL)
             and rho <= MONOTONE_RHO and rho_batch <= MONOTONE_RHO
             and abs(uniform * (k - 1) - 1) <= LIMIT_TOL
             and all(eq11_floor(k) - LIMIT_TOL <= g <= 1 + LIMIT_TOL for g in collapsed)
             and (not collapsed or np.median(collapsed) >= 1 - LIMIT_TOL))
    if not holds:
        return Finding(NOT_REPRODUCED, measured, expected)
    return Finding(REPRODUCED if collapsed else INCONCLUSIVE, measured, expected)


STUDY = Study(
    name="icml/gamma-entropy", paper=ICML, reproduces="Fig. 4 right, Eq. (10), (11)",
    title="Gamma_p^-2 of logit sets against their softmax entropy as the logits are scaled",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure, done={"batch": ()}, kinds=("set", "batch"), legacy={"match": {"study": "fig4-right"}},
    claims=(Claim("gamma-limits", "Fig. 4 right; Eq. (10), (11); App. C",
                  "Gamma_p lies in [1, sqrt(K-1)] and Gamma_p^-2 rises monotonically as the "
                  "softmax entropy falls, from 1/(K-1) at uniform p to the Eq. (11) limit 1 "
                  "when p collapses to two entries.",
                  check_gamma, scales=("tiny", "default", "cpu", "paper")),),
    doc=__doc__)
