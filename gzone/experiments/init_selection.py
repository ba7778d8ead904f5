"""Fort & Scherlis Fig. 6 (observation 7): selecting initialisations by their local convexity.

``inits`` Xavier draws θ0(i) (seed i). Each is measured on its own random d-plane (d = ``dim``,
the per-layer metric as in the radius study): the fraction of positive eigenvalues and
Tr H_d/‖H_d‖_F of the plane Hessian, and the initial loss on the test split (the paper's
"initial validation loss") — one ``init`` record each, written as measured. Then all draws are
trained in full space with Adam (full batch: ``train_lr``, ``train_steps`` steps; the paper: 10
epochs of minibatch Adam) as one vmapped grid (``batch_size`` at a time, checkpointed and
resumed); one ``trained`` record per draw holds the first logged step whose test accuracy reaches
``target_accuracy`` (null and flagged ``target_not_reached`` when it never does).

:func:`selection_summary`: per measure the Spearman correlation with the steps to target and a
one-sided Mann–Whitney U test that the draws in the favourable ``select_quantile`` (high convexity,
low loss) reach the target in fewer steps than those in the unfavourable one (scipy). Runs that
never reach the target rank last (steps = budget + one log).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import scipy.stats

from gzone import curvature, results, training
from gzone.experiments import base, fort, radius_sweep
from gzone.experiments.base import Progress, Record
from gzone.experiments.outside import log_writer, num_logs, stack

#: measure -> True when a high value is the favourable one
MEASURES = {"local_convexity": True, "positive_curvature": True, "initial_test_loss": False}
LOG_FIELDS = ("loss", "train_accuracy", "test_accuracy", "parameter_norm")


def load_train_test(config: fort.FortConfig, data_dir: str | None):
    """The setup on ``n_samples`` training samples and the first ``n_test`` test samples."""
    setup = fort.setup_for(config, data_dir)
    test = base.load_data(config.dataset, "test", config.n_test, data_dir=data_dir)
    return setup, jnp.asarray(test.x, setup.dtype), jnp.asarray(test.y, jnp.int32)


def steps_to_target(history: dict[str, np.ndarray], target: float) -> int | None:
    """The first logged step whose test accuracy is at least ``target`` (None if none)."""
    reached = np.flatnonzero(np.nan_to_num(history["test_accuracy"], nan=-1.0) >= target)
    return int(history["step"][reached[0]]) if reached.size else None


def run_init_selection(config: fort.FortConfig, out: Path, *, data_dir: str | None,
                       progress: Progress | None) -> None:
    """Fig. 6: ``init`` records (measures), then ``trained`` records (steps to target)."""
    setup, x_test, y_test = load_train_test(config, data_dir)
    base.check_dim(setup, config.dim)
    existing = base.open_results(config, out)
    measured = {r["seed"] for r in existing if r.get("kind") == "init"}
    trained = {r["seed"] for r in existing if r.get("kind") == "trained"}
    seeds = list(range(config.inits))
    states = {s: fort.seed_state(setup, config, s, config.dim) for s in seeds}
    train_batches = fort.batches_for(setup, config, states[0][0], config.dim)
    test_batches = curvature.prepare_batches(setup.model.apply, states[0][0], x_test, y_test,
                                             config.chunk_size, 1)
    todo_train = [s for s in seeds if s not in trained]
    ticker = base.Ticker(progress, len([s for s in seeds if s not in measured])
                         + len(todo_train) * num_logs(config.train_steps, config.train_log_every))
    for seed in seeds:
        if seed in measured:
            continue
        params, _, plane = states[seed]
        projection = curvature.projected(setup.model.apply, params, plane, train_batches)
        test_loss, _ = curvature.loss_and_gradient(setup.model.apply, params, test_batches)
        summary = radius_sweep.plane_record(projection.hessian)
        results.append_records(out, [base.tag(fort.NAME, "init", {
            "seed": seed, **fort.radius_fields(params, 1.0), "dim": config.dim,
            "local_convexity": summary["local_convexity"],
            "positive_curvature": summary["positive_curvature"],
            "initial_train_loss": float(projection.loss), "initial_test_loss": float(test_loss),
            "flags": summary["flags"]})])
        ticker.advance(1)
    for lo in range(0, len(todo_train), config.batch_size):
        batch = todo_train[lo:lo + config.batch_size]
        checkpoint = out / "checkpoints" / f"init-selection-{batch[0]:06d}"
        labels = [{"seed": s} for s in batch]
        grid = training.train_grid(
            setup.model.apply, stack([states[s][0] for s in batch]), setup.x, setup.y,
            lr=[config.train_lr] * len(batch), steps=config.train_steps,
            log_every=config.train_log_every, x_test=x_test, y_test=y_test, optimizer="adam",
            sharpness=False, chunk_size=config.chunk_size, checkpoint_dir=checkpoint,
            on_log=log_writer(out, existing, fort.NAME, labels, LOG_FIELDS, ticker))
        records = []
        for j, seed in enumerate(batch):
            history = {f: grid.history[f][j] for f in training.HISTORY_FIELDS}
            reached = steps_to_target(history, config.target_accuracy)
            final = history["test_accuracy"][history["step"] >= 0]
            diverged = int(grid.diverged_at[j])
            flags = ([] if reached is not None else ["target_not_reached"]) + (
                [] if diverged < 0 else ["diverged"])
            records.append(base.tag(fort.NAME, "trained", {
                "seed": seed, "target_accuracy": config.target_accuracy, "steps_to_target": reached,
                "budget": config.train_steps, "final_test_accuracy": float(final[-1]),
                "diverged_at": None if diverged < 0 else diverged, "flags": flags}))
        results.append_records(out, records)
        shutil.rmtree(checkpoint, ignore_errors=True)
    ticker.close()


def selection_summary(records: list[Record], quantile: float = 0.25) -> dict[str, Any]:
    """Per measure: Spearman ρ with the steps to target and the one-sided Mann–Whitney U p-value of
    favourable- vs unfavourable-quantile draws (module docstring); plus the draws used."""
    inits = {r["seed"]: r for r in records if r.get("kind") == "init"}
    trained = {r["seed"]: r for r in records if r.get("kind") == "trained"}
    seeds = sorted(set(inits) & set(trained))
    if len(seeds) < 4:
        return {"draws": len(seeds), "measures": {}}
    budget = trained[seeds[0]]["budget"]
    steps = np.array([trained[s]["steps_to_target"] if trained[s]["steps_to_target"] is not None
                      else budget + 1 for s in seeds], float)
    out: dict[str, Any] = {"draws": len(seeds), "reached": int(sum(
        trained[s]["steps_to_target"] is not None for s in seeds)),
        "median_steps": float(np.median(steps)), "measures": {}}
    k = max(1, int(math.floor(quantile * len(seeds))))
    for measure, high_is_good in MEASURES.items():
        values = np.array([np.nan if inits[s][measure] is None else inits[s][measure] for s in seeds])
        ok = np.isfinite(values)
        if ok.sum() < 4:
            continue
        order = np.argsort(values[ok])
        ranked = steps[ok][order]
        good, bad = (ranked[-k:], ranked[:k]) if high_is_good else (ranked[:k], ranked[-k:])
        test = scipy.stats.mannwhitneyu(good, bad, alternative="less")
        out["measures"][measure] = {
            "spearman": base.spearman(values[ok].tolist(), steps[ok].tolist()),
            "favourable_median_steps": float(np.median(good)),
            "unfavourable_median_steps": float(np.median(bad)),
            "mannwhitney_u": float(test.statistic), "p_value": float(test.pvalue), "per_quantile": k}
    return out
