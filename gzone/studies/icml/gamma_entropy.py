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
from gzone.engine import ICML, Study
from gzone.engine import setup as engine_setup
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
from gzone.studies.icml._common import LENET5_CIFAR10, LENET300_FASHION

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


def monotonicity(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Spearman correlation of Γ_p⁻² with entropy per logit set (monotone decrease ⇒ −1), and
    Γ_p⁻² at the highest and lowest entropy reached (1/(K−1) at uniform p; → 1 at collapse)."""
    sets = curves(records, "set")
    rhos = np.array([spearman(h, g) for h, g in sets.values()])
    batch = curves(records, "batch").get(-1)
    ok = np.isfinite(batch[1]) if batch else None
    nan = float("nan")
    return {
        "sets": len(sets),
        "spearman_median": float(np.nanmedian(rhos)), "spearman_max": float(np.nanmax(rhos)),
        "fraction_decreasing": float(np.mean(rhos < 0)),
        "batch_spearman": spearman(*batch) if batch else nan,
        "batch_gamma_inv2_at_max_entropy": float(batch[1][ok][np.argmax(batch[0][ok])]) if batch else nan,
        "batch_gamma_inv2_at_min_entropy": float(batch[1][ok][np.argmin(batch[0][ok])]) if batch else nan,
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


STUDY = Study(
    name="icml/gamma-entropy", paper=ICML, reproduces="Fig. 4 right, Eq. (10), (11)",
    title="Gamma_p^-2 of logit sets against their softmax entropy as the logits are scaled",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure, done={"batch": ()}, kinds=("set", "batch"), legacy={"match": {"study": "fig4-right"}},
    doc=__doc__)
