"""ICML App. E (Fig. 12 left) and the lazy regime of large-norm networks.

* :func:`run_probe` (``study="probe"``, Fig. 12 left): networks α·θ0 trained for ``steps`` GD
  steps at η0·α^(2−L) (α in ``probe_alphas``, ``probe_seeds`` seeds) and, per seed, the randomly
  initialised unscaled θ0; a linear probe (:func:`gzone.probes.linear_probe`: standardised
  features, L2 logistic regression with C = ``probe_c``) on each network's penultimate features
  (:func:`gzone.models.penultimate_features`) of the training set, evaluated on the test set.
  ``probe`` records: ``features`` = ``trained`` (per α, seed) or ``random`` (per seed).
* :func:`run_lazy` (``study="lazy"``): for α in ``lazy_alphas`` the network and its linearisation
  around α·θ0 (:func:`gzone.jacobian.linearized`), trained the same way (same GD, learning rate
  and steps). ``lazy`` records: the network's final and best train/test accuracy, the relative
  distance travelled ‖θ_t − θ0‖/‖θ0‖, the linearised model's train/test accuracy, the agreement
  of their test predictions and the relative difference of their test logits
  ‖z − z_lin‖_F/‖z‖_F. A lazy network is one its linearisation predicts: agreement near 1, a
  small logit difference, a small distance travelled.

Both log every training metric of both kinds of run (``log`` records; ``model`` = ``network`` /
``linearized`` in the lazy study) and resume from checkpoints like every training study.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gzone import jacobian, models, probes, results, training
from gzone.experiments import base
from gzone.experiments.base import Progress, Record, Setup
from gzone.experiments.outside import (
    NAME,
    OutsideConfig,
    initial_params,
    log_writer,
    num_logs,
    point,
    stack,
)

LOG_FIELDS = tuple(f for f in training.HISTORY_FIELDS if not f.startswith("sharpness"))
#: what a linearised run logs: its parameter norms and angles would count the anchor θ0 as well
LINEAR_LOG_FIELDS = ("step", "loss", "train_accuracy", "test_accuracy", "distance_from_init",
                     "zero_logit_samples", "uniform_deviation")


def _final(values: np.ndarray) -> float:
    ok = np.isfinite(values)
    return float(values[ok][-1]) if ok.any() else float("nan")


def _best(values: np.ndarray) -> float:
    ok = np.isfinite(values)
    return float(values[ok].max()) if ok.any() else float("nan")


def _train(config: OutsideConfig, apply_fn, params, x, y, x_test, y_test, lrs, checkpoint: Path,
           on_log) -> training.GridResult:
    return training.train_grid(apply_fn, params, x, y, lr=lrs, steps=config.steps,
                               log_every=config.log_every, x_test=x_test, y_test=y_test,
                               sharpness=False, chunk_size=config.chunk_size,
                               checkpoint_dir=checkpoint, on_log=on_log)


# ----------------------------------------------------------------------------- probes


def probe_features(setup: Setup, params: Any, x_test: jax.Array, y_test: jax.Array, *,
                   c: float) -> dict[str, Any]:
    """The probe (:func:`gzone.probes.linear_probe`) on the penultimate features of ``params``:
    fitted on the training set, scored on ``x_test``; ``{"probe_*": None, "note": ...}`` when the
    features are not finite (a diverged network)."""
    train_f = models.penultimate_features(setup.model, params, setup.x)
    test_f = models.penultimate_features(setup.model, params, x_test)
    if not (bool(jnp.all(jnp.isfinite(train_f))) and bool(jnp.all(jnp.isfinite(test_f)))):
        return {"probe_train_accuracy": None, "probe_test_accuracy": None,
                "probe_converged": None, "note": "non-finite features: not probed"}
    fit = probes.linear_probe(train_f, setup.y, test_f, y_test, c=c)
    return {"probe_train_accuracy": fit["train_accuracy"],
            "probe_test_accuracy": fit["test_accuracy"], "probe_converged": fit["converged"]}


def run_probe(config: OutsideConfig, setup: Setup, x_test: jax.Array, y_test: jax.Array,
              out: Path, existing: list[Record], progress: Progress | None) -> None:
    """Fig. 12 left: probes of trained (per α, seed) and random (per seed) features."""
    degree = setup.degree
    done = {(r["features"], r["alpha"], r["seed"]) for r in existing if r.get("kind") == "probe"}
    thetas = {s: initial_params(setup, config, s) for s in range(config.probe_seeds)}
    for seed, theta in thetas.items():
        if ("random", 1.0, seed) not in done:
            results.append_records(out, [base.tag(NAME, "probe", {
                "features": "random", "alpha": 1.0, "seed": seed, "probe_c": config.probe_c,
                **probe_features(setup, theta, x_test, y_test, c=config.probe_c)})])
    todo = [(a, s) for a in config.probe_alphas for s in range(config.probe_seeds)
            if ("trained", a, s) not in done]
    ticker = base.Ticker(progress, len(todo) * num_logs(config.steps, config.log_every))
    for lo in range(0, len(todo), config.batch_size):
        batch = todo[lo:lo + config.batch_size]
        lrs = [training.effective_lr(config.lr0, a, degree) for a, _ in batch]
        labels = [{"alpha": a, "seed": s} for a, s in batch]
        checkpoint = out / "checkpoints" / f"probe-{lo:06d}"
        grid = _train(config, setup.model.apply,
                      stack([models.scale(thetas[s], a) for a, s in batch]), setup.x, setup.y,
                      x_test, y_test, lrs, checkpoint,
                      log_writer(out, existing, NAME, labels, LOG_FIELDS, ticker))
        records = []
        for j, ((alpha, seed), lr) in enumerate(zip(batch, lrs)):
            diverged = int(grid.diverged_at[j])
            probe = ({"probe_train_accuracy": None, "probe_test_accuracy": None,
                      "probe_converged": None, "note": "diverged: not probed"} if diverged >= 0
                     else probe_features(setup, point(grid.params, j), x_test, y_test,
                                         c=config.probe_c))
            records.append(base.tag(NAME, "probe", {
                "features": "trained", "alpha": alpha, "seed": seed, "lr": lr,
                "probe_c": config.probe_c, "diverged_at": None if diverged < 0 else diverged,
                "network_train_accuracy": _final(grid.history["train_accuracy"][j]),
                "network_test_accuracy": _final(grid.history["test_accuracy"][j]), **probe}))
        results.append_records(out, records)
        shutil.rmtree(checkpoint, ignore_errors=True)
    ticker.close()


def probe_table(records: list[Record]) -> dict[str, Any]:
    """Fig. 12 left as arrays: ``alpha`` (A,), and for the trained features the (A,) mean / min /
    max over seeds of the probe's test accuracy; ``random``: (mean, min, max) over the seeds'
    random unscaled features; NaN where nothing was probed."""
    trained: dict[float, list[float]] = {}
    random: list[float] = []
    for r in records:
        if r.get("kind") != "probe" or r.get("probe_test_accuracy") is None:
            continue
        if r["features"] == "random":
            random.append(r["probe_test_accuracy"])
        else:
            trained.setdefault(r["alpha"], []).append(r["probe_test_accuracy"])
    alphas = sorted(trained)
    stats = {name: np.asarray([fn(trained[a]) for a in alphas]) for name, fn in
             (("mean", np.mean), ("min", np.min), ("max", np.max))}
    rand = ((float(np.mean(random)), float(np.min(random)), float(np.max(random))) if random
            else (float("nan"),) * 3)
    return {"alpha": np.asarray(alphas), **stats, "random": rand}


# ----------------------------------------------------------------------------- lazy regime


@jax.jit
def _agreement(z: jax.Array, z_lin: jax.Array) -> tuple[jax.Array, jax.Array]:
    same = jnp.mean(jnp.argmax(z, -1) == jnp.argmax(z_lin, -1))
    return same, jnp.linalg.norm(z - z_lin) / jnp.linalg.norm(z)


def compare_linearized(apply_fn, params: Any, linear_variables: Any, x_test: jax.Array) -> dict[str, float]:
    """The trained network against its trained linearisation on ``x_test``: the fraction of equal
    predictions and ‖z − z_lin‖_F/‖z‖_F."""
    z = jacobian.logits_of(apply_fn, params, x_test)
    z_lin = jacobian.logits_of(jacobian.linearized(apply_fn), linear_variables, x_test)
    same, diff = _agreement(z, z_lin)
    return {"test_agreement": float(same), "logit_relative_difference": float(diff)}


def run_lazy(config: OutsideConfig, setup: Setup, x_test: jax.Array, y_test: jax.Array,
             out: Path, existing: list[Record], progress: Progress | None) -> None:
    """The lazy regime: network and linearisation trained at each α of ``lazy_alphas``."""
    degree = setup.degree
    apply_fn, linear_fn = setup.model.apply, jacobian.linearized(setup.model.apply)
    done = {(r["alpha"], r["seed"]) for r in existing if r.get("kind") == "lazy"}
    todo = [(a, s) for a in config.lazy_alphas for s in range(config.seeds) if (a, s) not in done]
    thetas = {s: initial_params(setup, config, s) for s in range(config.seeds)}
    ticker = base.Ticker(progress, 2 * len(todo) * num_logs(config.steps, config.log_every))
    for lo in range(0, len(todo), config.batch_size):
        batch = todo[lo:lo + config.batch_size]
        lrs = [training.effective_lr(config.lr0, a, degree) for a, _ in batch]
        starts = [models.scale(thetas[s], a) for a, s in batch]
        grids = {}
        for kind, fn, params, fields in (
                ("network", apply_fn, stack(starts), LOG_FIELDS),
                ("linearized", linear_fn, stack([jacobian.linearization_point(p) for p in starts]),
                 LINEAR_LOG_FIELDS)):
            labels = [{"model": kind, "alpha": a, "seed": s} for a, s in batch]
            checkpoint = out / "checkpoints" / f"lazy-{kind}-{lo:06d}"
            grids[kind] = _train(config, fn, params, setup.x, setup.y, x_test, y_test, lrs,
                                 checkpoint, log_writer(out, existing, NAME, labels, fields, ticker))
        net, lin = grids["network"], grids["linearized"]
        records = []
        for j, ((alpha, seed), lr) in enumerate(zip(batch, lrs)):
            h, hl = ({f: g.history[f][j] for f in training.HISTORY_FIELDS} for g in (net, lin))
            norm0 = float(h["parameter_norm"][0])
            compared = ({"test_agreement": None, "logit_relative_difference": None}
                        if net.diverged_at[j] >= 0 or lin.diverged_at[j] >= 0 else
                        compare_linearized(apply_fn, point(net.params, j), point(lin.params, j),
                                           x_test))
            records.append(base.tag(NAME, "lazy", {
                "alpha": alpha, "seed": seed, "lr": lr,
                "diverged_at": None if net.diverged_at[j] < 0 else int(net.diverged_at[j]),
                "linear_diverged_at": None if lin.diverged_at[j] < 0 else int(lin.diverged_at[j]),
                "train_accuracy": _final(h["train_accuracy"]),
                "test_accuracy": _final(h["test_accuracy"]),
                "max_test_accuracy": _best(h["test_accuracy"]),
                "relative_distance": _final(h["distance_from_init"]) / norm0,
                "linear_train_accuracy": _final(hl["train_accuracy"]),
                "linear_test_accuracy": _final(hl["test_accuracy"]),
                "linear_relative_distance": _final(hl["distance_from_init"]) / norm0,
                **compared}))
        results.append_records(out, records)
        for kind in grids:
            shutil.rmtree(out / "checkpoints" / f"lazy-{kind}-{lo:06d}", ignore_errors=True)
    ticker.close()


def lazy_table(records: list[Record]) -> dict[str, np.ndarray]:
    """The ``lazy`` records as (A,) arrays over α, means over seeds."""
    rows: dict[float, list[Record]] = {}
    for r in records:
        if r.get("kind") == "lazy":
            rows.setdefault(r["alpha"], []).append(r)
    fields = ("train_accuracy", "test_accuracy", "relative_distance", "linear_train_accuracy",
              "linear_test_accuracy", "test_agreement", "logit_relative_difference")
    alphas = sorted(rows)

    def mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else float("nan")

    return {"alpha": np.asarray(alphas),
            **{f: np.asarray([mean([r.get(f) for r in rows[a]]) for a in alphas]) for f in fields}}
