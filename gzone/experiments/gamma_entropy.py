"""ICML Fig. 4 right: Γ_p^-2 (Eq. 10) against the softmax entropy of logit sets scaled by α.

``n_sets`` logit sets z (a Kaiming model's logits of the first ``n_sets`` samples, or N(0, std²)
draws) are scaled by every α of the grid; per set and α the softmax entropy and Γ_p of
diag(p) − ppᵀ, and Γ_p^-2 of the set-averaged matrix (the paper's red curve).

Records (kinds ``set`` and ``batch``, one per (set, α)): ``RECORD_FIELDS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from gzone import metrics, objective, random_model, results
from gzone.experiments import base
from gzone.experiments.base import ModelDataConfig, Progress, Record

NAME = "fig4-right"
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "set": ("set", "alpha", "entropy", "gamma_p", "gamma_p_inv2"),
    "batch": ("set", "alpha", "entropy", "gamma_p", "gamma_p_inv2"),
}
SOURCES = ("model", "gaussian")


@dataclasses.dataclass(frozen=True)
class Fig4RightConfig(ModelDataConfig):
    """Fig. 4 right: Γ_p^-2 vs softmax entropy of ``n_sets`` logit sets scaled by α."""

    source: str = dataclasses.field(default="model", metadata={
        "help": "model: logits of the first n_sets samples; gaussian: N(0, logit_std^2) logits", "choices": SOURCES})
    n_sets: int = 30
    seed: int = 0
    logit_std: float = 1.0
    num_classes: int = dataclasses.field(default=10, metadata={
        "help": "classes K of the gaussian logits (source gaussian only)"})
    alpha_min: float = 1e-2
    alpha_max: float = 1e2
    num_points: int = 81

    STUDY: ClassVar[str] = NAME


def validate(config: Fig4RightConfig) -> None:
    """Reject bad configurations with one-line messages that name the fix."""
    base.check_model_data(config)
    base.check_positive(config, "alpha_min", "alpha_max", "logit_std")
    base.check_range(config, "alpha_min", "alpha_max")
    base.check_at_least(config, "n_sets", "num_points")
    base.check_choice(config, "source", SOURCES)


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
    setup = base.make_setup(config, base.load_data(config.dataset, config.split, config.n_sets,
                                                   data_dir=data_dir))
    params = base.init_params(setup, config.init, jax.random.key(config.seed))
    return setup.model.apply(params, setup.x)


def run(
    config: Fig4RightConfig, out_dir: str | Path, *, data_dir: str | None = None,
    progress: Progress | None = None,
) -> list[Record]:
    """Fig. 4 right (cheap: computed at once; a complete directory is returned as it is)."""
    validate(config)
    logits = fig4_logits(config, data_dir)
    existing = base.open_results(config, out_dir)
    if existing:
        return existing
    alphas = base.alpha_grid(config)
    entropy, gamma, batch_entropy, batch_gamma = gamma_curves(logits, alphas)
    records = []
    for i, alpha in enumerate(alphas):
        for s in range(entropy.shape[1]):
            records.append(base.tag(NAME, "set", {
                "set": s, "alpha": alpha, "entropy": float(entropy[i, s]),
                "gamma_p": float(gamma[i, s]), "gamma_p_inv2": float(gamma[i, s] ** -2)}))
        records.append(base.tag(NAME, "batch", {
            "set": -1, "alpha": alpha, "entropy": float(batch_entropy[i]),
            "gamma_p": float(batch_gamma[i]), "gamma_p_inv2": float(batch_gamma[i] ** -2)}))
    results.append_records(out_dir, records)
    return base.load(out_dir)


def _curves(records: list[Record], kind: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{set: (entropies, Γ_p^-2)} of the records of ``kind`` (None -> NaN)."""
    out: dict[int, list] = {}
    for r in records:
        if r.get("kind") == kind:
            out.setdefault(r["set"], []).append(
                (r["entropy"], np.nan if r["gamma_p_inv2"] is None else r["gamma_p_inv2"]))
    return {s: tuple(np.array(v, float).T) for s, v in out.items()}


def summarize(records: list[Record]) -> dict[str, Any]:
    """Spearman correlation of Γ_p^-2 with entropy per logit set (monotone decrease ⇒ −1), and
    Γ_p^-2 at the highest and lowest entropy reached (1/(K−1) at uniform p; → 1 at collapse)."""
    sets = _curves(records, "set")
    rhos = np.array([base.spearman(h, g) for h, g in sets.values()])
    batch = _curves(records, "batch").get(-1)
    ok = np.isfinite(batch[1]) if batch else None
    return {
        "sets": len(sets),
        "spearman_median": float(np.nanmedian(rhos)), "spearman_max": float(np.nanmax(rhos)),
        "fraction_decreasing": float(np.mean(rhos < 0)),
        "batch_spearman": base.spearman(*batch) if batch else float("nan"),
        "batch_gamma_inv2_at_max_entropy": float(batch[1][ok][np.argmax(batch[0][ok])]) if batch else
        float("nan"),
        "batch_gamma_inv2_at_min_entropy": float(batch[1][ok][np.argmin(batch[0][ok])]) if batch else
        float("nan"),
    }
