"""Fort & Scherlis observation 8: full-space training draws the radius into the Goldilocks zone.

Per seed, the Xavier draw θ0 moved to each radius factor c of ``drift_factors`` (c·θ0: every
weight matrix on its scaled shell) and trained in full space with Adam (full batch, ``train_lr``,
``train_steps`` steps) — all (c, seed) runs one vmapped grid, checkpointed and resumed. ``log``
records hold ‖θ_t‖ (``radius``), the loss and accuracies at every logged step; one ``run`` record
per (c, seed) the initial, final and Xavier radii. :func:`drift_table` summarises.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from gzone import results, training
from gzone.experiments import base, fort
from gzone.experiments.base import Progress, Record
from gzone.experiments.init_selection import load_train_test
from gzone.experiments.outside import log_writer, num_logs, stack

LOG_FIELDS = ("loss", "train_accuracy", "test_accuracy", "parameter_norm")


def run_radius_drift(config: fort.FortConfig, out: Path, *, data_dir: str | None,
                     progress: Progress | None) -> None:
    """Observation 8: ``log`` and ``run`` records of every (radius factor, seed)."""
    setup, x_test, y_test = load_train_test(config, data_dir)
    existing = base.open_results(config, out)
    done = {(r["radius_factor"], r["seed"]) for r in existing if r.get("kind") == "run"}
    todo = [(c, s) for s in range(config.seeds) for c in config.drift_factors if (c, s) not in done]
    thetas = {s: fort.seed_state(setup, config, s, 1)[0] for s in range(config.seeds)}
    ticker = base.Ticker(progress, len(todo) * num_logs(config.train_steps, config.train_log_every))
    for lo in range(0, len(todo), config.batch_size):
        batch = todo[lo:lo + config.batch_size]
        checkpoint = out / "checkpoints" / f"radius-drift-{lo:06d}"
        labels = [{"radius_factor": c, "seed": s} for c, s in batch]
        grid = training.train_grid(
            setup.model.apply, stack([fort.scaled(thetas[s], c) for c, s in batch]), setup.x,
            setup.y, lr=[config.train_lr] * len(batch), steps=config.train_steps,
            log_every=config.train_log_every, x_test=x_test, y_test=y_test, optimizer="adam",
            sharpness=False, chunk_size=config.chunk_size, checkpoint_dir=checkpoint,
            on_log=log_writer(out, existing, fort.NAME, labels, LOG_FIELDS, ticker))
        records = []
        for j, (c, seed) in enumerate(batch):
            h = {f: grid.history[f][j] for f in training.HISTORY_FIELDS}
            logged = h["step"] >= 0
            diverged = int(grid.diverged_at[j])
            records.append(base.tag(fort.NAME, "run", {
                **fort.radius_fields(thetas[seed], c), "seed": seed, "lr": config.train_lr,
                "final_radius": float(h["parameter_norm"][logged][-1]),
                "final_test_accuracy": float(h["test_accuracy"][logged][-1]),
                "final_train_accuracy": float(h["train_accuracy"][logged][-1]),
                "diverged_at": None if diverged < 0 else diverged,
                "flags": [] if diverged < 0 else ["diverged"]}))
        results.append_records(out, records)
        shutil.rmtree(checkpoint, ignore_errors=True)
    ticker.close()


def drift_curves(records: list[Record]) -> dict[tuple[float, int], tuple[np.ndarray, np.ndarray]]:
    """(radius factor, seed) -> (steps, ‖θ_t‖) from the ``log`` records."""
    curves: dict[tuple[float, int], list[tuple[int, float]]] = {}
    for r in records:
        if r.get("kind") == "log" and r.get("parameter_norm") is not None:
            curves.setdefault((r["radius_factor"], r["seed"]), []).append((r["step"], r["parameter_norm"]))
    return {k: tuple(np.array(a) for a in zip(*sorted(v))) for k, v in sorted(curves.items())}


def drift_table(records: list[Record]) -> list[dict[str, float]]:
    """Per radius factor (means over seeds): initial, final and Xavier radius, final accuracies."""
    rows: dict[float, list[Record]] = {}
    for r in records:
        if r.get("kind") == "run":
            rows.setdefault(r["radius_factor"], []).append(r)
    return [{"radius_factor": c, "radius": float(np.mean([g["radius"] for g in group])),
             "final_radius": float(np.mean([g["final_radius"] for g in group])),
             "xavier_radius": float(np.mean([g["xavier_radius"] for g in group])),
             "final_test_accuracy": float(np.mean([g["final_test_accuracy"] for g in group])),
             "final_train_accuracy": float(np.mean([g["final_train_accuracy"] for g in group]))}
            for c, group in sorted(rows.items())]
