"""ICML App. E, Fig. 11: the uniform-softmax-output (USO) model and the divergence of α < 1 networks.

By Eq. (3), an α-scaled homogeneous network (degree L) whose softmax is uniform receives the
update α^(L−1)·g_USO(θ), so that at the learning rate η0·α^(2−L) its parameters are exactly α
times those of the USO model — θ0 trained by the update g_USO = (1/N) Σ_μ Σ_k (1/K − 1{y_μ = k})
∂z_μk/∂θ whatever it predicts (``train(..., uso=True)``) — for as long as the softmax stays uniform.

* :func:`run_uso` (``study="uso"``, Fig. 11 left): per seed the USO model at ``uso_lr0`` and the
  networks α·θ0, α in ``uso_alphas``, at :func:`gzone.training.effective_lr` ``(uso_lr0, α, L)``.
  ``log`` records carry every training metric (``run`` = ``uso`` / ``scaled``); each ``run``
  record holds ``left_uniform_at``, the first logged step whose softmax is no longer uniform
  (max_μ,k |p_μk − 1/K| > ``uniform_tol``). :func:`paths` gives the norm curves rescaled by 1/α
  and :func:`departures` the first logged step at which a network's rescaled norm differs from
  the USO path's by more than a relative tolerance.
* :func:`run_retrain` (``study="uso-retrain"``, Fig. 11 right): at ``retrain_points`` USO steps
  t, evenly spaced over the finite part of the path (0 … ``steps``, or the last logged step
  before the path overflows: its norm grows like ‖θ‖^(L−1) per step, a finite-time blow-up), cos(θ_t, θ0), cos(θ_t, −g_t) (g_t the USO update) and the training error
  that ordinary GD at ``retrain_lr0`` reaches after ``retrain_steps`` steps from the rescaled
  point ‖θ0‖·θ_t/‖θ_t‖ (all retrainings of a seed are one vmapped grid). The USO snapshots are kept
  in ``<out>/checkpoints/uso-path-seed-<s>.npz`` until the seed is recorded, so a resumed run
  retrains from exactly the same points.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gzone import curvature, metrics, results, training
from gzone.experiments import base
from gzone.experiments.base import Progress, Record, Setup
from gzone.experiments.outside import (
    NAME,
    OutsideConfig,
    initial_params,
    log_writer,
    num_logs,
    stack,
)

#: the training metrics a USO / scaled run logs (no sharpness: not measured here)
LOG_FIELDS = tuple(f for f in training.HISTORY_FIELDS if not f.startswith("sharpness"))
#: a network has left the USO path once its rescaled norm differs from the path's by this much
DEPARTURE_TOL = 1e-3


def left_uniform_at(history: dict[str, np.ndarray], tol: float) -> int | None:
    """The first logged step whose softmax is not uniform (max |p − 1/K| > ``tol``), or None."""
    steps, deviation = history["step"], history["uniform_deviation"]
    ok = np.isfinite(deviation) & (steps >= 0)
    above = np.flatnonzero(ok & (deviation > tol))
    return int(steps[above[0]]) if len(above) else None


def _run_record(run: str, alpha: float, seed: int, lr: float, history: dict[str, np.ndarray],
                diverged_at: int, tol: float) -> Record:
    ok = np.isfinite(history["loss"])
    return {"run": run, "alpha": alpha, "seed": seed, "lr": lr,
            "diverged_at": None if diverged_at < 0 else int(diverged_at),
            "left_uniform_at": left_uniform_at(history, tol),
            "last_step": int(history["step"][ok][-1]),
            "final_parameter_norm": float(history["parameter_norm"][ok][-1]),
            "final_train_accuracy": float(history["train_accuracy"][ok][-1]),
            "final_test_accuracy": float(history["test_accuracy"][ok][-1])}


def run_uso(config: OutsideConfig, setup: Setup, x_test: jax.Array, y_test: jax.Array, out: Path,
            existing: list[Record], progress: Progress | None) -> None:
    """Fig. 11 left: the USO model and the α < 1 networks of every seed (see the module)."""
    degree = setup.degree
    finished = {(r["run"], r["alpha"], r["seed"]) for r in existing if r.get("kind") == "run"}
    runs = [(run, alpha, seed) for seed in range(config.seeds)
            for run, alpha in [("uso", 1.0)] + [("scaled", a) for a in config.uso_alphas]]
    todo = [p for p in runs if p not in finished]
    ticker = base.Ticker(progress, len(todo) * num_logs(config.steps, config.log_every))
    for seed in range(config.seeds):
        theta0 = initial_params(setup, config, seed)
        for uso in (True, False):
            mine = [p for p in todo if p[2] == seed and (p[0] == "uso") == uso]
            for lo in range(0, len(mine), config.batch_size):
                batch = mine[lo:lo + config.batch_size]
                lrs = [config.uso_lr0 if uso else
                       training.effective_lr(config.uso_lr0, a, degree) for _, a, _ in batch]
                labels = [{"run": r, "alpha": a, "seed": s} for r, a, s in batch]
                checkpoint = out / "checkpoints" / f"{'uso' if uso else 'scaled'}-{seed}-{lo}"
                grid = training.train_grid(
                    setup.model.apply, stack([_scaled(theta0, a) for _, a, _ in batch]), setup.x,
                    setup.y, lr=lrs, steps=config.steps, log_every=config.log_every,
                    x_test=x_test, y_test=y_test, uso=uso, sharpness=False,
                    chunk_size=config.chunk_size, checkpoint_dir=checkpoint,
                    on_log=log_writer(out, existing, NAME, labels, LOG_FIELDS, ticker))
                results.append_records(out, [base.tag(NAME, "run", _run_record(
                    r, a, s, lr, {f: grid.history[f][j] for f in training.HISTORY_FIELDS},
                    int(grid.diverged_at[j]), config.uniform_tol))
                    for j, ((r, a, s), lr) in enumerate(zip(batch, lrs))])
                shutil.rmtree(checkpoint, ignore_errors=True)
    ticker.close()


def _scaled(params: Any, alpha: float) -> Any:
    return jax.tree_util.tree_map(lambda a: a * alpha, params) if alpha != 1.0 else params


# ----------------------------------------------------------------------------- retraining


def retrain_steps_of(config: OutsideConfig, horizon: int) -> list[int]:
    """The USO steps retrained from: ``retrain_points`` evenly spaced over 0 … ``horizon``, each
    rounded to a logged step (a multiple of ``log_every``, or ``horizon`` itself), so that the
    path is computed in the blocks of its horizon run — the same compiled program."""
    every = config.log_every
    return sorted({min(horizon, every * int(round(t / every)))
                   for t in np.linspace(0, horizon, config.retrain_points)})


def uso_horizon(config: OutsideConfig, setup: Setup, theta0: Any) -> int:
    """The last logged step (of 0 … ``steps``, every ``log_every``) at which the USO path is still
    finite: its norm grows like ‖θ‖^(L−1) per step, a finite-time blow-up that overflows."""
    res = training.train(setup.model.apply, theta0, setup.x, setup.y, lr=config.uso_lr0,
                         steps=config.steps, log_every=config.log_every, uso=True, sharpness=False,
                         chunk_size=config.chunk_size)
    return int(res.history["step"][-1])


def _uso_path(config: OutsideConfig, setup: Setup, theta0: Any, path_file: Path,
              ticker: base.Ticker) -> tuple[list[int], np.ndarray, int]:
    """(steps, flat θ_t (len(steps), P), horizon): the USO parameters at the retraining steps,
    from ``path_file`` when a previous run left it there, else computed (one ``train`` per
    segment; GD has no optimizer state, so chained segments are one run) and saved there
    atomically."""
    if path_file.exists():
        with np.load(path_file) as saved:
            ticker.advance(config.retrain_points)
            return saved["steps"].tolist(), saved["thetas"], int(saved["horizon"])
    horizon = uso_horizon(config, setup, theta0)
    steps = retrain_steps_of(config, horizon)
    theta, done, rows = theta0, 0, []
    for t in steps:
        if t > done:
            theta = training.train(setup.model.apply, theta, setup.x, setup.y, lr=config.uso_lr0,
                                   steps=t - done, log_every=min(config.log_every, t - done),
                                   uso=True, sharpness=False, chunk_size=config.chunk_size).params
            done = t
        rows.append(np.asarray(ravel_pytree(theta)[0]))
        ticker.advance(1)
    thetas = np.stack(rows)
    if not np.all(np.isfinite(thetas)):  # the horizon is the last finite log: cannot happen
        raise FloatingPointError(f"the USO path is not finite before step {horizon}")
    path_file.parent.mkdir(parents=True, exist_ok=True)
    partial = path_file.with_suffix(".partial.npz")
    np.savez(partial, steps=np.asarray(steps), thetas=thetas, horizon=horizon)
    os.replace(partial, path_file)
    return steps, thetas, horizon


def path_geometry(apply_fn: Any, batches: curvature.Batches, theta: Any,
                  theta0: Any) -> dict[str, float]:
    """At a USO point θ_t: ‖θ_t‖, ‖g_t‖, cos(θ_t, θ0) and cos(θ_t, −g_t), g_t the USO update
    (:func:`gzone.training.update_direction`) on ``batches``."""
    g = ravel_pytree(_uso_direction(apply_fn, theta, batches))[0]
    flat, flat0 = ravel_pytree(theta)[0], ravel_pytree(theta0)[0]
    return {"parameter_norm": float(jnp.linalg.norm(flat)), "gradient_norm": float(jnp.linalg.norm(g)),
            "cos_param_init": float(metrics.cosine_similarity(flat, flat0)),
            "cos_param_neg_gradient": float(metrics.cosine_similarity(flat, -g))}


@functools.partial(jax.jit, static_argnums=0)
def _uso_direction(apply_fn: Any, theta: Any, batches: curvature.Batches) -> Any:
    return training.update_direction(apply_fn, theta, batches, uso=True)


def run_retrain(config: OutsideConfig, setup: Setup, x_test: jax.Array, y_test: jax.Array,
                out: Path, existing: list[Record], progress: Progress | None) -> None:
    """Fig. 11 right: the geometry of the USO path and retraining from its rescaled points."""
    by_seed: dict[int, list[Record]] = {}
    for r in existing:
        if r.get("kind") == "retrain":
            by_seed.setdefault(r["seed"], []).append(r)
    seeds = [s for s in range(config.seeds) if s not in by_seed or
             {r["uso_step"] for r in by_seed[s]}
             != set(retrain_steps_of(config, by_seed[s][0]["uso_horizon"]))]
    retrain_log = max(1, config.retrain_steps // 10)
    per_seed = config.retrain_points * (1 + num_logs(config.retrain_steps, retrain_log))
    ticker = base.Ticker(progress, len(seeds) * per_seed)
    for seed in seeds:
        theta0 = initial_params(setup, config, seed)
        flat0, unravel = ravel_pytree(theta0)
        path_file = out / "checkpoints" / f"uso-path-seed-{seed}.npz"
        steps, thetas, horizon = _uso_path(config, setup, theta0, path_file, ticker)
        done = {r["uso_step"] for r in by_seed.get(seed, [])}
        todo = [j for j, t in enumerate(steps) if t not in done]
        batches = curvature.prepare_batches(setup.model.apply, theta0, setup.x, setup.y,
                                            config.chunk_size)
        geometry = [path_geometry(setup.model.apply, batches, unravel(jnp.asarray(thetas[j])),
                                  theta0) for j in todo]
        norm0 = float(jnp.linalg.norm(flat0))
        starts = [unravel(jnp.asarray(thetas[j] * (norm0 / np.linalg.norm(thetas[j]))))
                  for j in todo]

        def on_log(step, row, ok):
            ticker.advance(int(np.sum(ok)))

        checkpoint = out / "checkpoints" / f"retrain-seed-{seed}"
        grid = training.train_grid(
            setup.model.apply, stack(starts), setup.x, setup.y,
            lr=[config.retrain_lr0] * len(todo), steps=config.retrain_steps,
            log_every=retrain_log, x_test=x_test, y_test=y_test, sharpness=False,
            batch_size=config.batch_size, chunk_size=config.chunk_size,
            checkpoint_dir=checkpoint, on_log=on_log)
        records = []
        for i, j in enumerate(todo):
            acc = grid.history["train_accuracy"][i]
            test = grid.history["test_accuracy"][i]
            ok = np.isfinite(acc)
            records.append(base.tag(NAME, "retrain", {
                "seed": seed, "uso_step": steps[j], "uso_horizon": horizon, **geometry[i],
                "retrain_lr": config.retrain_lr0, "retrain_steps": config.retrain_steps,
                "diverged_at": None if grid.diverged_at[i] < 0 else int(grid.diverged_at[i]),
                "train_error": float(1 - acc[ok][-1]), "best_train_error": float(1 - acc[ok].max()),
                "final_test_accuracy": float(test[ok][-1])}))
        results.append_records(out, records)
        shutil.rmtree(checkpoint, ignore_errors=True)
        path_file.unlink(missing_ok=True)
    ticker.close()


# ----------------------------------------------------------------------------- summaries


def paths(records: list[Record]) -> dict[tuple[str, float], tuple[np.ndarray, np.ndarray]]:
    """(run, α) -> (steps, mean over seeds of ‖θ_t‖/α) of the ``log`` records (Fig. 11 left)."""
    rows: dict[tuple[str, float], dict[int, list[float]]] = {}
    for r in records:
        if r.get("kind") == "log" and r.get("parameter_norm") is not None:
            rows.setdefault((r["run"], r["alpha"]), {}).setdefault(r["step"], []).append(
                r["parameter_norm"] / r["alpha"])
    return {key: (np.asarray(sorted(s)), np.asarray([np.mean(s[t]) for t in sorted(s)]))
            for key, s in sorted(rows.items())}


def departures(records: list[Record], rel_tol: float = DEPARTURE_TOL) -> dict[tuple[float, int], int | None]:
    """(α, seed) -> the first logged step at which ‖θ_t‖/α differs from the USO model's ‖θ_t‖
    (same seed, same step) by more than ``rel_tol`` relative, or None (it never left)."""
    uso: dict[tuple[int, int], float] = {}
    scaled: dict[tuple[float, int], dict[int, float]] = {}
    for r in records:
        if r.get("kind") != "log" or r.get("parameter_norm") is None:
            continue
        if r["run"] == "uso":
            uso[(r["seed"], r["step"])] = r["parameter_norm"]
        else:
            scaled.setdefault((r["alpha"], r["seed"]), {})[r["step"]] = r["parameter_norm"] / r["alpha"]
    out: dict[tuple[float, int], int | None] = {}
    for (alpha, seed), by_step in sorted(scaled.items()):
        out[(alpha, seed)] = next(
            (t for t in sorted(by_step) if (seed, t) in uso
             and abs(by_step[t] - uso[(seed, t)]) > rel_tol * uso[(seed, t)]), None)
    return out


def summarize_uso(records: list[Record]) -> dict[str, Any]:
    """Per α (seed 0): the step at which the softmax stopped being uniform and the step at which
    the network left the USO path."""
    gone = departures(records)
    out = {}
    for r in records:
        if r.get("kind") == "run" and r["run"] == "scaled":
            out[f"{r['alpha']:.3g}/seed{r['seed']}"] = {
                "left_uniform_at": r["left_uniform_at"], "left_uso_path_at": gone.get((r["alpha"], r["seed"])),
                "final_train_accuracy": r["final_train_accuracy"], "diverged_at": r["diverged_at"]}
    return out


def summarize_retrain(records: list[Record]) -> list[dict[str, Any]]:
    """The ``retrain`` records, sorted by (seed, USO step), as the rows of a table."""
    keys = ("seed", "uso_step", "parameter_norm", "cos_param_init", "cos_param_neg_gradient",
            "train_error", "final_test_accuracy")
    return [{k: r[k] for k in keys} for r in sorted(
        (r for r in records if r.get("kind") == "retrain"), key=lambda r: (r["seed"], r["uso_step"]))]
