"""ICML App. E, Fig. 11 right: the USO path rotates away from θ0, and retraining from it gets
harder.

At ``retrain_points`` USO steps t, evenly spaced over the finite part of the path (0 … ``steps``,
or the last logged step before the path overflows: its norm grows like ‖θ‖^(L−1) per step, a
finite-time blow-up), a ``retrain`` record holds cos(θ_t, θ0), cos(θ_t, −g_t) (g_t the USO
update) and the training error that ordinary GD at ``retrain_lr0`` reaches after
``retrain_steps`` steps from the rescaled point ‖θ0‖·θ_t/‖θ_t‖ (all retrainings of a seed one
vmapped grid). The USO snapshots of a seed are kept in its checkpoint folder until the seed is
recorded, so a resumed run retrains from exactly the same points.

    gzone run icml/uso-retrain
    gzone run icml/uso-retrain --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gzone import curvature, metrics, training
from gzone.engine import ICML, Claim, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import check_at_least, check_positive, field, run_settings
from gzone.engine.study import point_key
from gzone.engine.summary import spearman
from gzone.studies.icml._common import outside


@dataclasses.dataclass(frozen=True)
class Config(outside.RunConfig):
    """The geometry of the USO path and GD retrained from its rescaled points."""

    uso_lr0: float = field(0.003, "base lr0 of the USO model (the paper: 0.0002)")
    retrain_points: int = field(11, "USO steps (0 .. steps, evenly spaced) retrained from")
    retrain_steps: int = field(500, "GD steps of each retraining from the rescaled USO point")
    retrain_lr0: float = field(0.1, "learning rate of the retraining (alpha = 1)")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {**outside.TINY, "uso_lr0": 0.05, "retrain_points": 3, "retrain_steps": 20},
    "default": {},
    "cpu": {**outside.CPU, "uso_lr0": 0.0002, "retrain_steps": 1000},
    "paper": {**outside.PAPER, "uso_lr0": 0.0002, "retrain_points": 11, "retrain_steps": 5000},
}


def validate(config: Config) -> None:
    outside.validate_runs(config)
    check_positive(config, "uso_lr0", "retrain_lr0")
    check_at_least(config, "retrain_steps")
    check_at_least(config, "retrain_points", minimum=2)


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    return [{"kind": "retrain", "seed": s} for s in range(config.seeds)]


def retrain_steps_of(config: Config, horizon: int) -> list[int]:
    """The USO steps retrained from: ``retrain_points`` evenly spaced over 0 … ``horizon``, each
    rounded to a logged step (a multiple of ``log_every``, or ``horizon`` itself), so that the
    path is computed in the blocks of its horizon run — the same compiled program."""
    every = config.log_every
    return sorted({min(horizon, every * int(round(t / every)))
                   for t in np.linspace(0, horizon, config.retrain_points)})


def finished(config: Config, records: list[dict[str, Any]]) -> set:
    """A seed is finished once every USO step of its horizon has a ``retrain`` record."""
    by_seed: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("kind") == "retrain":
            by_seed.setdefault(r["seed"], []).append(r)
    return {point_key({"kind": "retrain", "seed": s}) for s, rs in by_seed.items()
            if {r["uso_step"] for r in rs} == set(retrain_steps_of(config, rs[0]["uso_horizon"]))}


def uso_horizon(config: Config, setup: Any, theta0: Any) -> int:
    """The last logged step (of 0 … ``steps``, every ``log_every``) at which the USO path is still
    finite."""
    res = training.train(setup.model.apply, theta0, setup.x, setup.y, lr=config.uso_lr0,
                         steps=config.steps, log_every=config.log_every, uso=True, sharpness=False,
                         chunk_size=config.chunk_size,
                         matmul_precision=config.matmul_precision)
    return int(res.history["step"][-1])


def uso_path(config: Config, setup: Any, theta0: Any, path_file: Any,
             advance: Any) -> tuple[list[int], np.ndarray, int]:
    """(steps, flat θ_t (len(steps), P), horizon): the USO parameters at the retraining steps,
    from ``path_file`` when an interrupted run left it there, else computed (one ``train`` per
    segment; GD has no optimizer state, so chained segments are one run) and saved atomically."""
    if path_file.exists():
        with np.load(path_file) as saved:
            advance(config.retrain_points)
            return saved["steps"].tolist(), saved["thetas"], int(saved["horizon"])
    horizon = uso_horizon(config, setup, theta0)
    steps = retrain_steps_of(config, horizon)
    theta, done, rows = theta0, 0, []
    for t in steps:
        if t > done:
            theta = training.train(setup.model.apply, theta, setup.x, setup.y, lr=config.uso_lr0,
                                   steps=t - done, log_every=min(config.log_every, t - done),
                                   uso=True, sharpness=False, chunk_size=config.chunk_size,
                                   matmul_precision=config.matmul_precision).params
            done = t
        rows.append(np.asarray(ravel_pytree(theta)[0]))
        advance(1)
    thetas = np.stack(rows)
    if not np.all(np.isfinite(thetas)):  # the horizon is the last finite log: cannot happen
        raise FloatingPointError(f"the USO path is not finite before step {horizon}")
    path_file.parent.mkdir(parents=True, exist_ok=True)
    partial = path_file.with_suffix(".partial.npz")
    np.savez(partial, steps=np.asarray(steps), thetas=thetas, horizon=horizon)
    os.replace(partial, path_file)
    return steps, thetas, horizon


@functools.partial(jax.jit, static_argnums=0)
def _uso_direction(apply_fn: Any, theta: Any, batches: curvature.Batches) -> Any:
    return training.update_direction(apply_fn, theta, batches, uso=True)


def path_geometry(apply_fn: Any, batches: curvature.Batches, theta: Any,
                  theta0: Any) -> dict[str, float]:
    """At a USO point θ_t: ‖θ_t‖, ‖g_t‖, cos(θ_t, θ0) and cos(θ_t, −g_t), g_t the USO update
    (:func:`gzone.training.update_direction`) on ``batches``."""
    g = ravel_pytree(_uso_direction(apply_fn, theta, batches))[0]
    flat, flat0 = ravel_pytree(theta)[0], ravel_pytree(theta0)[0]
    return {"parameter_norm": float(jnp.linalg.norm(flat)), "gradient_norm": float(jnp.linalg.norm(g)),
            "cos_param_init": float(metrics.cosine_similarity(flat, flat0)),
            "cos_param_neg_gradient": float(metrics.cosine_similarity(flat, -g))}


def retrain_log_every(config: Config) -> int:
    """Logs of a retraining: ten over its steps."""
    return max(1, config.retrain_steps // 10)


def measure(ctx, chunk):
    config, setup = ctx.config, ctx.setup
    seed = chunk[0]["seed"]
    theta0 = outside.thetas(ctx, config.seeds)[seed]
    flat0, unravel = ravel_pytree(theta0)
    path_file = ctx.checkpoint("path") / "uso-path.npz"
    steps, thetas, horizon = uso_path(config, setup, theta0, path_file, ctx.advance)
    done = {r["uso_step"] for r in ctx.existing if r.get("kind") == "retrain" and r["seed"] == seed}
    todo = [j for j, t in enumerate(steps) if t not in done]
    batches = curvature.prepare_batches(setup.model.apply, theta0, setup.x, setup.y,
                                        config.chunk_size)
    geometry = [path_geometry(setup.model.apply, batches, unravel(jnp.asarray(thetas[j])), theta0)
                for j in todo]
    norm0 = float(jnp.linalg.norm(flat0))
    starts = [unravel(jnp.asarray(thetas[j] * (norm0 / np.linalg.norm(thetas[j])))) for j in todo]
    grid = training.train_grid(
        setup.model.apply, outside.stack(starts), setup.x, setup.y,
        lr=[config.retrain_lr0] * len(todo), steps=config.retrain_steps,
        log_every=retrain_log_every(config), x_test=setup.x_test, y_test=setup.y_test,
        sharpness=False, batch_size=config.batch_size, chunk_size=config.chunk_size,
        **run_settings(config), checkpoint_dir=ctx.checkpoint("retrain"),
        on_log=lambda step, row, ok: ctx.advance(int(np.sum(ok))))
    records = []
    for i, j in enumerate(todo):
        acc, test = grid.history["train_accuracy"][i], grid.history["test_accuracy"][i]
        ok = np.isfinite(acc)
        records.append({
            "kind": "retrain", "seed": seed, "uso_step": steps[j], "uso_horizon": horizon,
            **geometry[i], "retrain_lr": config.retrain_lr0, "retrain_steps": config.retrain_steps,
            "diverged_at": None if grid.diverged_at[i] < 0 else int(grid.diverged_at[i]),
            "train_error": float(1 - acc[ok][-1]), "best_train_error": float(1 - acc[ok].max()),
            "final_test_accuracy": float(test[ok][-1])})
    yield records


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``retrain`` records, sorted by (seed, USO step), as the rows of a table."""
    keys = ("seed", "uso_step", "parameter_norm", "cos_param_init", "cos_param_neg_gradient",
            "train_error", "final_test_accuracy")
    return [{k: r[k] for k in keys} for r in sorted(
        (r for r in records if r.get("kind") == "retrain"), key=lambda r: (r["seed"], r["uso_step"]))]


#: Fig. 11 right: cos(θ_t, θ0) falls and cos(θ_t, −g_t) rises along the path — a Spearman rank
#: correlation with t of at most minus / at least this
TREND = 0.8
#: App. E: the rotation "significantly affects its trainability even after fixing its magnitude":
#: the retrained training error at the path's last point exceeds that at t = 0 by at least this
ERROR_RISE = 0.05


def check_rotation(rows: list[dict[str, Any]]) -> Finding:
    """Fig. 11 right: for every seed, along the USO path cos(θ_t, θ0) falls and cos(θ_t, −g_t)
    rises (Spearman ρ with t ≤ −``TREND`` / ≥ ``TREND``) and the training error GD reaches from
    the rescaled point grows by at least ``ERROR_RISE`` from t = 0 to the last point.
    Inconclusive when a seed has fewer than 3 points."""
    expected = (f"per seed: Spearman(t, cos(theta_t, theta_0)) <= -{TREND}, Spearman(t, "
                f"cos(theta_t, -g_t)) >= {TREND}, retrained error rises by >= {ERROR_RISE}")
    by_seed: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_seed.setdefault(r["seed"], []).append(r)
    measured: dict[str, Any] = {"seeds": sorted(by_seed), "uso_steps": [], "spearman_cos_init": [],
                                "spearman_cos_neg_gradient": [], "error_first_last": []}
    holds = []
    for seed in sorted(by_seed):
        path = sorted(by_seed[seed], key=lambda r: r["uso_step"])
        t = [r["uso_step"] for r in path]
        rho_init = spearman(t, [r["cos_param_init"] for r in path])
        rho_neg = spearman(t, [r["cos_param_neg_gradient"] for r in path])
        error = [path[0]["train_error"], path[-1]["train_error"]]
        measured["uso_steps"].append([t[0], t[-1]])
        measured["spearman_cos_init"].append(outside.plain(rho_init))
        measured["spearman_cos_neg_gradient"].append(outside.plain(rho_neg))
        measured["error_first_last"].append(error)
        holds.append(rho_init <= -TREND and rho_neg >= TREND and error[1] - error[0] >= ERROR_RISE)
    if not by_seed or any(len(rs) < 3 for rs in by_seed.values()):
        return Finding(INCONCLUSIVE, measured, expected)
    return Finding(REPRODUCED if all(holds) else NOT_REPRODUCED, measured, expected)


def retrain_curves(records: list[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """field -> (USO steps, mean over seeds) of the cosines and the retrained train error."""
    rows: dict[str, dict[int, list[float]]] = {}
    for r in records:
        if r.get("kind") != "retrain":
            continue
        for f in ("cos_param_init", "cos_param_neg_gradient", "train_error"):
            if r.get(f) is not None:
                rows.setdefault(f, {}).setdefault(r["uso_step"], []).append(r[f])
    return {f: (np.asarray(sorted(s)), np.asarray([np.mean(s[t]) for t in sorted(s)]))
            for f, s in rows.items()}


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """Along the USO path, cos(θ_t, θ0) and cos(θ_t, −g_t) (left axis) and, in red (right axis),
    the training error GD reaches from ‖θ0‖·θ_t/‖θ_t‖ in the stated budget; means over seeds."""
    import matplotlib.pyplot as plt

    from gzone.plots import finish

    curves = retrain_curves(records)
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    if not curves:
        outside.empty(ax, "retrain")
    styles = {"cos_param_init": ("tab:blue", r"$\cos(\theta_t, \theta_0)$"),
              "cos_param_neg_gradient": ("tab:green", r"$\cos(\theta_t, -g_t)$")}
    for f, (color, label) in styles.items():
        if f in curves:
            ax.plot(*curves[f], "-o", color=color, ms=3, lw=1.3, label=label)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("USO step $t$")
    ax.set_ylabel("cosine similarity")
    ax.grid(alpha=0.3, lw=0.3)
    twin = ax.twinx()
    budget = sorted({(r["retrain_steps"], r["retrain_lr"]) for r in records
                     if r.get("kind") == "retrain"})
    if "train_error" in curves:
        what = (rf"train error after {budget[0][0]} GD steps, $\eta$ = {budget[0][1]:.3g}"
                if len(budget) == 1 else "train error after retraining")
        twin.plot(*curves["train_error"], "-s", color="tab:red", ms=3, lw=1.5, label=what)
    twin.set_ylim(-0.02, 1.02)
    twin.set_ylabel("train error (retrained)", color="tab:red")
    twin.tick_params(axis="y", colors="tab:red")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="lower left")
    return finish(fig, title, path_stem)


STUDY = Study(
    name="icml/uso-retrain", paper=ICML, reproduces="Fig. 11 right, App. E",
    title="rotation along the USO path and GD retrained from its rescaled points",
    config=Config, presets=PRESETS, validate=validate, prepare=outside.prepare, points=points,
    measure=measure, summarize=summarize, figure=figure, finished=finished,
    work=lambda config, p: config.retrain_points * (1 + outside.num_logs(
        config.retrain_steps, retrain_log_every(config))), kinds=("retrain",), legacy={"match": {"study": "outside"}},
    claims=(Claim("uso-rotation", "Fig. 11 right; App. E",
                  "Along the USO path cos(theta_t, theta_0) falls, cos(theta_t, -g_t) rises, and "
                  "the training error reached from the rescaled point grows.",
                  check_rotation),),
    doc=__doc__)
