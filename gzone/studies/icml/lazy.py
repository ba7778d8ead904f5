"""ICML App. E: large-norm networks learn in the lazy regime (the network against its
linearisation).

For α in ``lazy_alphas`` the network and its linearisation around α·θ0
(:func:`gzone.jacobian.linearized`) are trained the same way (same GD, learning rate η0·α^(2−L)
and steps). ``lazy`` records: the network's final and best train/test accuracy, the relative
distance travelled ‖θ_t − θ0‖/‖θ0‖, the linearised model's train/test accuracy, the agreement of
their test predictions and the relative difference of their test logits ‖z − z_lin‖_F/‖z‖_F.
A lazy network is one its linearisation predicts: agreement near 1, a small logit difference, a
small distance travelled. Both models log every training metric (``log`` records, ``model`` =
``network`` / ``linearized``).

    gzone run icml/lazy
    gzone run icml/lazy --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import jacobian, models, training
from gzone.engine import ICML, Claim, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import check_alphas, check_positive, field, run_settings
from gzone.engine.study import batched
from gzone.studies.icml._common import outside

#: what a linearised run logs: its parameter norms and angles would count the anchor θ0 as well
LINEAR_LOG_FIELDS = ("step", "loss", "train_accuracy", "test_accuracy", "distance_from_init",
                     "zero_logit_samples", "uniform_deviation")


@dataclasses.dataclass(frozen=True)
class Config(outside.RunConfig):
    """Networks at large α and their linearisations, trained the same way."""

    lr0: float = field(0.1, "base learning rate lr0 (lr = lr0 * alpha^(2-L))")
    lazy_alphas: tuple[float, ...] = field((1.0, 10.0, 100.0), "alphas (1: the reference)")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {**outside.TINY, "lazy_alphas": (1.0, 100.0)},
    "default": {},
    "cpu": {**outside.CPU},
    "paper": {**outside.PAPER, "lazy_alphas": (1.0, 10.0, 100.0, 1000.0)},
}


def validate(config: Config) -> None:
    outside.validate_runs(config)
    check_positive(config, "lr0")
    check_alphas(config, "lazy_alphas")


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    return [{"kind": "lazy", "alpha": a, "seed": s} for a in config.lazy_alphas
            for s in range(config.seeds)]


@jax.jit
def _agreement(z: jax.Array, z_lin: jax.Array) -> tuple[jax.Array, jax.Array]:
    same = jnp.mean(jnp.argmax(z, -1) == jnp.argmax(z_lin, -1))
    return same, jnp.linalg.norm(z - z_lin) / jnp.linalg.norm(z)


def compare_linearized(apply_fn: Any, params: Any, linear_variables: Any,
                       x_test: jax.Array) -> dict[str, float]:
    """The trained network against its trained linearisation on ``x_test``: the fraction of equal
    predictions and ‖z − z_lin‖_F/‖z‖_F."""
    z = jacobian.logits_of(apply_fn, params, x_test)
    z_lin = jacobian.logits_of(jacobian.linearized(apply_fn), linear_variables, x_test)
    same, diff = _agreement(z, z_lin)
    return {"test_agreement": float(same), "logit_relative_difference": float(diff)}


def measure(ctx, chunk):
    """A batch of (α, seed): the networks and their linearisations, two vmapped grids."""
    config, setup = ctx.config, ctx.setup
    apply_fn, linear_fn = setup.model.apply, jacobian.linearized(setup.model.apply)
    thetas = outside.thetas(ctx, config.seeds)
    lrs = [training.effective_lr(config.lr0, p["alpha"], setup.degree) for p in chunk]
    starts = [models.scale(thetas[p["seed"]], p["alpha"]) for p in chunk]
    grids = {}
    for kind, fn, params, fields in (
            ("network", apply_fn, outside.stack(starts), outside.LOG_FIELDS),
            ("linearized", linear_fn, outside.stack([jacobian.linearization_point(p) for p in starts]),
             LINEAR_LOG_FIELDS)):
        labels = [{"kind": "lazy", "model": kind, "alpha": p["alpha"], "seed": p["seed"]}
                  for p in chunk]
        grids[kind] = training.train_grid(
            fn, params, setup.x, setup.y, lr=lrs, steps=config.steps, log_every=config.log_every,
            x_test=setup.x_test, y_test=setup.y_test, sharpness=False, chunk_size=config.chunk_size,
            **run_settings(config), checkpoint_dir=ctx.checkpoint(kind), on_log=ctx.log_writer(labels, fields))
    net, lin = grids["network"], grids["linearized"]
    records = []
    for j, (p, lr) in enumerate(zip(chunk, lrs)):
        h, hl = ({f: g.history[f][j] for f in training.HISTORY_FIELDS} for g in (net, lin))
        norm0 = float(h["parameter_norm"][0])
        compared = ({"test_agreement": None, "logit_relative_difference": None}
                    if net.diverged_at[j] >= 0 or lin.diverged_at[j] >= 0 else
                    compare_linearized(apply_fn, outside.point(net.params, j),
                                       outside.point(lin.params, j), setup.x_test))
        records.append({
            **p, "lr": lr,
            "diverged_at": None if net.diverged_at[j] < 0 else int(net.diverged_at[j]),
            "linear_diverged_at": None if lin.diverged_at[j] < 0 else int(lin.diverged_at[j]),
            "train_accuracy": outside.final(h["train_accuracy"]),
            "test_accuracy": outside.final(h["test_accuracy"]),
            "max_test_accuracy": outside.best(h["test_accuracy"]),
            "relative_distance": outside.final(h["distance_from_init"]) / norm0,
            "linear_train_accuracy": outside.final(hl["train_accuracy"]),
            "linear_test_accuracy": outside.final(hl["test_accuracy"]),
            "linear_relative_distance": outside.final(hl["distance_from_init"]) / norm0,
            **compared})
    yield records


LAZY_FIELDS = ("train_accuracy", "test_accuracy", "relative_distance", "linear_train_accuracy",
               "linear_test_accuracy", "test_agreement", "logit_relative_difference")


def lazy_table(records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The ``lazy`` records as (A,) arrays over α, means over seeds."""
    rows: dict[float, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("kind") == "lazy":
            rows.setdefault(r["alpha"], []).append(r)
    alphas = sorted(rows)

    def mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else float("nan")

    return {"alpha": np.asarray(alphas),
            **{f: np.asarray([mean([r.get(f) for r in rows[a]]) for a in alphas]) for f in LAZY_FIELDS}}


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per α (means over seeds): the network's and its linearisation's accuracies, the distance
    travelled, and how far the two models agree."""
    t = lazy_table(records)
    return [{"alpha": float(a), **{f: float(t[f][i]) for f in LAZY_FIELDS}}
            for i, a in enumerate(t["alpha"])]


#: "α ≫ 1": the α checked are those at least this
LARGE_ALPHA = 10.0
#: lazy training (Chizat et al. 2019, App. E): the trained network is its trained linearisation —
#: their test predictions agree on at least this fraction of the test set
AGREEMENT = 0.95


def check_lazy(rows: list[dict[str, Any]]) -> Finding:
    """App. E (gzone's check of "lazy"): at every α ≥ ``LARGE_ALPHA`` the trained network and its
    trained linearisation predict the same class on at least ``AGREEMENT`` of the test set
    (mean over seeds). Inconclusive without such α or with a missing value (a diverged run)."""
    expected = f"test-prediction agreement with the linearisation >= {AGREEMENT} at alpha >= {LARGE_ALPHA:g}"
    large = [r for r in rows if r["alpha"] >= LARGE_ALPHA]
    measured = {f"{r['alpha']:g}": {f: outside.plain(r[f]) for f in (
        "test_agreement", "logit_relative_difference", "relative_distance", "test_accuracy",
        "linear_test_accuracy")} for r in rows}
    agreement = [r["test_agreement"] for r in large]
    if not large or not all(np.isfinite(agreement)):
        return Finding(INCONCLUSIVE, measured, expected)
    return Finding(REPRODUCED if min(agreement) >= AGREEMENT else NOT_REPRODUCED, measured, expected)


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """Against α (means over seeds): accuracies of the network (train solid, test dashed) and of
    its trained linearisation (test dotted); the relative distance travelled ‖θ_t − θ0‖/‖θ0‖;
    agreement of the two models' test predictions and ‖z − z_lin‖/‖z‖."""
    import matplotlib.pyplot as plt

    from gzone.plots import ALPHA_LABEL, finish

    t = lazy_table(records)
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.6))
    if not len(t["alpha"]):
        for ax in axes:
            outside.empty(ax, "lazy")
    a = t["alpha"]
    ax = axes[0]
    ax.plot(a, t["train_accuracy"], "-o", color="tab:blue", ms=3, label="network, train")
    ax.plot(a, t["test_accuracy"], "--o", color="tab:blue", ms=3, label="network, test")
    ax.plot(a, t["linear_test_accuracy"], ":s", color="tab:orange", ms=3, label="linearised, test")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax = axes[1]
    ax.plot(a, t["relative_distance"], "-o", color="tab:purple", ms=3)
    ax.set_yscale("log")
    ax.set_ylabel(r"$\|\theta_t-\theta_0\|/\|\theta_0\|$")
    ax = axes[2]
    ax.plot(a, t["test_agreement"], "-o", color="tab:green", ms=3, label="test prediction agreement")
    ax.plot(a, t["logit_relative_difference"], "--s", color="tab:red", ms=3,
            label=r"$\|z-z_{lin}\|/\|z\|$ (test)")
    ax.set_ylabel("network vs linearisation")
    for ax in axes:
        if len(a):
            ax.set_xscale("log")
        ax.set_xlabel(ALPHA_LABEL)
        ax.grid(alpha=0.3, lw=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


STUDY = Study(
    name="icml/lazy", paper=ICML, reproduces="App. E (lazy regime)",
    title="large-alpha networks against their linearisation: distance travelled, agreement",
    config=Config, presets=PRESETS, validate=validate, prepare=outside.prepare, points=points,
    measure=measure, summarize=summarize, figure=figure, done={"lazy": ("alpha", "seed")},
    chunks=batched(lambda config: config.batch_size),
    work=lambda config, p: 2 * outside.num_logs(config.steps, config.log_every), kinds=("lazy", "log"), legacy={"match": {"study": "outside"}},
    claims=(Claim("lazy-linearisation", "App. E",
                  "Large-alpha networks learn in the lazy regime: the trained network agrees with "
                  "its trained linearisation.",
                  check_lazy, scales=("cpu", "paper")),),
    doc=__doc__)
