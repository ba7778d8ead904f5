"""ICML Fig. 5 right: gradient norm against ‖Q̂ − Q‖₂ over class priors Q ~ Uniform(simplex), Eq. (9).

The gradient is the full one, so d = P, and σ_c² must be estimated in full space.

*Derivation.* c_k = (1/N) Σ_μ ∇θ z_k(x_μ) = ∇θ [(1/N) Σ_μ z_k(x_μ)] by linearity, so the (K, P)
matrix of class means is the Jacobian of the *mean logit vector*: K vector-Jacobian products (one
vmapped vjp per chunk of samples, :func:`gzone.jacobian.class_mean_logit_gradients`), not N·K
per-sample gradients. Then σ_c² = (1/KP) Σ_k ‖c_k‖² (the estimator of ``logit_gradient_stats``
with d = P; biased up by σ_e²/N, negligible for N in the thousands). With orthogonal c_k of
squared length P σ_c², ‖Σ_k c_k δ_k‖ = √P σ_c ‖δ‖ (``reading="exact"``); the paper prints
P σ_c² ‖δ‖ (the squared norm's factor, ``reading="paper"``). Both slopes are compared with the
least-squares slope through the origin; a third prediction uses the estimated c_k themselves,
√(δᵀ C Cᵀ δ) (no orthogonality).

Records (kinds ``calibration``, once, and ``prior``, one per prior): ``RECORD_FIELDS``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, data, objective, results
from gzone.experiments import base
from gzone.experiments.base import ModelDataConfig, Progress, Record, Setup
from gzone.jacobian import class_mean_logit_gradients, logits_of

NAME = "fig5-right"
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "calibration": ("seed", "num_params", "n_pool", "n_subset", "sigma_c2", "class_mean_gram",
                    "slope_exact", "slope_paper"),
    "prior": ("prior", "prior_q", "gradient_norm", "q_gap", "loss", "mean_entropy",
              "predicted_norm_exact", "predicted_norm_paper", "predicted_norm_means"),
}


@dataclasses.dataclass(frozen=True)
class Fig5RightConfig(ModelDataConfig):
    """Fig. 5 right: gradient norm vs ‖Q̂ − Q‖ over priors Q ~ Uniform(simplex), Eq. (9)."""

    widths: tuple[int, ...] = (128, 64)
    n_samples: int | None = dataclasses.field(default=None, metadata={
        "help": "the pool: first N samples of the split (none: all of it)"})
    subset_size: int = dataclasses.field(default=5000, metadata={
        "help": "samples per subset, capped by the smallest class of the pool (noted in the records)"})
    n_priors: int = 200
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of the initialisation"})
    prior_seed: int = 0

    EXTENDABLE: ClassVar[tuple[str, ...]] = ("n_priors",)
    STUDY: ClassVar[str] = NAME


def validate(config: Fig5RightConfig) -> None:
    """Reject bad configurations with one-line messages that name the fix."""
    base.check_model_data(config)
    base.check_at_least(config, "n_priors", "subset_size")


def fig5_calibration(
    setup: Setup, config: Fig5RightConfig, params: Any, subset_size: int
) -> Record:
    """σ_c² on the whole pool from the full-space class means c_k (K, P), their Gram matrix
    C Cᵀ, and the two predicted slopes of Eq. (9): √(P σ_c²) (exact) and P σ_c² (paper)."""
    c = class_mean_logit_gradients(setup.model.apply, params, setup.x, chunk_size=config.chunk_size)
    sigma_c2 = base.to_float(jnp.mean(jnp.square(c)))
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
        "gradient_norm": base.to_float(jnp.linalg.norm(grad)), "q_gap": gap,
        "loss": base.to_float(loss), "mean_entropy": base.mean_entropy(p),
        "predicted_norm_exact": calibration["slope_exact"] * gap,
        "predicted_norm_paper": calibration["slope_paper"] * gap,
        "predicted_norm_means": float(np.sqrt(max(delta @ gram @ delta, 0.0))),
    }


def run(
    config: Fig5RightConfig, out_dir: str | Path, *, data_dir: str | None = None,
    progress: Progress | None = None,
) -> list[Record]:
    """Fig. 5 right, resumable per prior (the calibration record is written first)."""
    validate(config)
    pool = base.load_data(config.dataset, config.split, config.n_samples, data_dir=data_dir)
    setup = base.make_setup(config, pool)
    params = base.init_params(setup, config.init, jax.random.key(config.seed))
    indices = data.class_indices(pool.y, pool.num_classes)
    existing = base.open_results(config, out_dir)
    calibration = next((r for r in existing if r["kind"] == "calibration"), None)
    if calibration is None:
        smallest = min(len(i) for i in indices)
        subset_size = min(config.subset_size, smallest)
        calibration = base.tag(NAME, "calibration",
                               fig5_calibration(setup, config, params, subset_size))
        if subset_size < config.subset_size:
            calibration["flags"] = [f"subset_size_capped_to_smallest_class_{smallest}"]
        results.append_records(out_dir, [calibration])
    done = {r["prior"] for r in existing if r["kind"] == "prior"}
    todo = [i for i in range(config.n_priors) if i not in done]
    for i in base.iterate(todo, progress):
        record = fig5_prior_record(setup, config, params, pool, indices, calibration, i)
        results.append_records(out_dir, [base.tag(NAME, "prior", record)])
    return base.load(out_dir)


def summarize(records: list[Record]) -> dict[str, Any]:
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
        "r2_through_origin": float(r2), "spearman": base.spearman(gap, norm),
        "median_norm_over_means_prediction": float(np.median(norm / means)) if priors else float("nan"),
        "flags": cal.get("flags", []),
    }
