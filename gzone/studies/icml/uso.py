"""ICML App. E, Fig. 11 left: small-norm networks follow the uniform-softmax-output (USO) path.

By Eq. (3), an α-scaled homogeneous network (degree L) whose softmax is uniform receives the
update α^(L−1)·g_USO(θ), so that at the learning rate η0·α^(2−L) its parameters are exactly α
times those of the USO model — θ0 trained by the update g_USO = (1/N) Σ_μ Σ_k (1/K − 1{y_μ = k})
∂z_μk/∂θ whatever it predicts (``train(..., uso=True)``) — for as long as the softmax stays
uniform. Per seed the USO model at ``uso_lr0`` and the networks α·θ0, α in ``uso_alphas``, at
``effective_lr(uso_lr0, α, L)``: ``log`` records carry every training metric, each ``run`` record
``left_uniform_at``, the first logged step whose softmax is no longer uniform
(max_μ,k |p_μk − 1/K| > ``uniform_tol``). :func:`paths` gives the norm curves rescaled by 1/α and
:func:`departures` the first logged step at which a network's rescaled norm leaves the USO path.

    gzone run icml/uso
    gzone run icml/uso --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gzone import models, training
from gzone.engine import ICML, Claim, ConfigError, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import check_alphas, check_positive, field, run_settings
from gzone.engine.study import batched
from gzone.studies.icml._common import outside

#: a network has left the USO path once its rescaled norm differs from the path's by this much
DEPARTURE_TOL = 1e-3


@dataclasses.dataclass(frozen=True)
class Config(outside.RunConfig):
    """The USO model beside α < 1 networks trained at η0·α^(2−L)."""

    uso_lr0: float = field(0.003, "base lr0 of the USO model and the alpha < 1 networks "
                                  "(the paper: 0.0002)")
    uso_alphas: tuple[float, ...] = field((0.003, 0.01, 0.03, 0.1), "alphas < 1 set beside the "
                                          "USO model")
    uniform_tol: float = field(1e-3, "the softmax counts as uniform while max |p - 1/K| <= this")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {**outside.TINY, "uso_alphas": (0.01, 0.1), "uso_lr0": 0.05},
    "default": {},
    "cpu": {**outside.CPU, "uso_lr0": 0.0002},
    "paper": {**outside.PAPER, "uso_lr0": 0.0002, "uso_alphas": (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)},
}


def validate(config: Config) -> None:
    outside.validate_runs(config)
    check_positive(config, "uso_lr0", "uniform_tol")
    if config.uniform_tol >= 1:
        raise ConfigError("uniform_tol", f"{{name}} must be < 1, got {config.uniform_tol!r}")
    check_alphas(config, "uso_alphas", below_one=True)


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    return [{"kind": "run", "run": run, "alpha": alpha, "seed": seed}
            for seed in range(config.seeds)
            for run, alpha in [("uso", 1.0)] + [("scaled", a) for a in config.uso_alphas]]


def left_uniform_at(history: dict[str, np.ndarray], tol: float) -> int | None:
    """The first logged step whose softmax is not uniform (max |p − 1/K| > ``tol``), or None."""
    steps, deviation = history["step"], history["uniform_deviation"]
    ok = np.isfinite(deviation) & (steps >= 0)
    above = np.flatnonzero(ok & (deviation > tol))
    return int(steps[above[0]]) if len(above) else None


def run_record(point: dict[str, Any], lr: float, history: dict[str, np.ndarray], diverged_at: int,
               tol: float) -> dict[str, Any]:
    """The ``run`` record of one finished run from its history."""
    ok = np.isfinite(history["loss"])
    return {**point, "lr": lr, "diverged_at": None if diverged_at < 0 else int(diverged_at),
            "left_uniform_at": left_uniform_at(history, tol),
            "last_step": int(history["step"][ok][-1]),
            "final_parameter_norm": float(history["parameter_norm"][ok][-1]),
            "final_train_accuracy": float(history["train_accuracy"][ok][-1]),
            "final_test_accuracy": float(history["test_accuracy"][ok][-1])}


def measure(ctx, chunk):
    """A batch of runs of one seed, all USO or all scaled (one vmapped program)."""
    config, setup = ctx.config, ctx.setup
    theta0 = outside.thetas(ctx, config.seeds)[chunk[0]["seed"]]
    uso = chunk[0]["run"] == "uso"
    lrs = [config.uso_lr0 if uso else training.effective_lr(config.uso_lr0, p["alpha"], setup.degree)
           for p in chunk]
    starts = [theta0 if p["alpha"] == 1.0 else models.scale(theta0, p["alpha"]) for p in chunk]
    grid = training.train_grid(
        setup.model.apply, outside.stack(starts), setup.x, setup.y, lr=lrs, steps=config.steps,
        log_every=config.log_every, x_test=setup.x_test, y_test=setup.y_test, uso=uso,
        sharpness=False, chunk_size=config.chunk_size, **run_settings(config), checkpoint_dir=ctx.checkpoint(),
        on_log=ctx.log_writer(chunk, outside.LOG_FIELDS))
    yield [run_record(p, lr, {f: grid.history[f][j] for f in training.HISTORY_FIELDS},
                      int(grid.diverged_at[j]), config.uniform_tol)
           for j, (p, lr) in enumerate(zip(chunk, lrs))]


def paths(records: list[dict[str, Any]]) -> dict[tuple[str, float], tuple[np.ndarray, np.ndarray]]:
    """(run, α) -> (steps, mean over seeds of ‖θ_t‖/α) of the ``log`` records."""
    rows: dict[tuple[str, float], dict[int, list[float]]] = {}
    for r in records:
        if r.get("kind") == "log" and r.get("parameter_norm") is not None:
            rows.setdefault((r["run"], r["alpha"]), {}).setdefault(r["step"], []).append(
                r["parameter_norm"] / r["alpha"])
    return {key: (np.asarray(sorted(s)), np.asarray([np.mean(s[t]) for t in sorted(s)]))
            for key, s in sorted(rows.items())}


def departures(records: list[dict[str, Any]], rel_tol: float = DEPARTURE_TOL) -> dict:
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
    return {(alpha, seed): next((t for t in sorted(by_step) if (seed, t) in uso and abs(
        by_step[t] - uso[(seed, t)]) > rel_tol * uso[(seed, t)]), None)
        for (alpha, seed), by_step in sorted(scaled.items())}


def log_interval(records: list[dict[str, Any]]) -> int | None:
    """The smallest step between two logs of one run (None with fewer than two logs)."""
    steps: dict[tuple, set[int]] = {}
    for r in records:
        if r.get("kind") == "log":
            steps.setdefault((r.get("run"), r.get("alpha"), r.get("seed")), set()).add(r["step"])
    gaps = [int(b - a) for s in steps.values() for a, b in zip(sorted(s), sorted(s)[1:])]
    return min(gaps, default=None)


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (α, seed) of the scaled networks: the step at which the softmax stopped being uniform,
    the step at which the network left the USO path, its final train accuracy and divergence,
    and the steps between logs (both departures are seen at logs only)."""
    gone, every = departures(records), log_interval(records)
    return [{"alpha": r["alpha"], "seed": r["seed"], "left_uniform_at": r["left_uniform_at"],
             "left_uso_path_at": gone.get((r["alpha"], r["seed"])),
             "final_train_accuracy": r["final_train_accuracy"], "diverged_at": r["diverged_at"],
             "log_interval": every}
            for r in records if r.get("kind") == "run" and r["run"] == "scaled"]


def _mean_step(values: list[int | None]) -> float:
    """Mean over seeds of a departure step; a run that never departs counts as infinitely late."""
    return float(np.mean([np.inf if v is None else v for v in values]))


def check_uso_path(rows: list[dict[str, Any]]) -> Finding:
    """Fig. 11 left, Eq. (3): every α-scaled network stays on the USO path while its softmax is
    uniform — it leaves the path no earlier than one log before its softmax leaves uniform (both
    departures are seen at logs, each with its own tolerance), and not at all if its softmax
    stays uniform — and the smaller α, the later it leaves (mean over seeds; never leaving counts
    as latest): no smaller α leaves earlier than a larger one, and the smallest leaves more than
    one log later than the largest. Inconclusive with fewer than two α or no departure."""
    expected = ("no network leaves the USO path more than one log before its softmax leaves "
                "uniform; departure steps non-increasing in alpha, smallest alpha > one log "
                "later than the largest")
    every = next((r["log_interval"] for r in rows if r.get("log_interval")), 0)
    early = [f"alpha={r['alpha']:g} seed={r['seed']}" for r in rows
             if r["left_uso_path_at"] is not None and (
                 r["left_uniform_at"] is None or r["left_uso_path_at"] < r["left_uniform_at"] - every)]
    by_alpha: dict[float, list[dict[str, Any]]] = {}
    for r in rows:
        by_alpha.setdefault(r["alpha"], []).append(r)
    alphas = sorted(by_alpha)
    left = [_mean_step([r["left_uso_path_at"] for r in by_alpha[a]]) for a in alphas]
    measured = {"alphas": alphas, "left_uso_path_at": [outside.plain(v) for v in left],
                "left_uniform_at": [outside.plain(_mean_step([r["left_uniform_at"] for r in by_alpha[a]]))
                                    for a in alphas],
                "log_interval": every, "left_path_while_uniform": early}
    if early:
        return Finding(NOT_REPRODUCED, measured, expected)
    if len(alphas) < 2 or all(np.isinf(left)):
        return Finding(INCONCLUSIVE, measured, expected)
    ordered = all(a >= b for a, b in zip(left, left[1:]))
    if not ordered:
        return Finding(NOT_REPRODUCED, measured, expected)
    return Finding(REPRODUCED if left[0] - left[-1] > every else INCONCLUSIVE, measured, expected)


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """‖θ_t‖ of the USO model (black, dashed, on top) and ‖θ_t‖/α of the α-scaled networks
    against the step (log scale), mean over seeds; a dot where a network's softmax stopped being
    uniform (``left_uniform_at``, seed 0), a cross where the USO model's norm overflowed (its last
    finite step); the USO model's η0 in the title."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from gzone.plots import finish

    curves = paths(records)
    alphas = sorted({a for run, a in curves if run == "scaled"})
    colors = outside.alpha_colors(alphas)
    runs = [r for r in records if r.get("kind") == "run"]
    left = {r["alpha"]: r["left_uniform_at"] for r in runs
            if r.get("run") == "scaled" and r.get("seed") == 0}
    uso_runs = [r for r in runs if r.get("run") == "uso"]
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    if not curves:
        outside.empty(ax, "uso log")
    for (run, alpha), (steps, norms) in curves.items():
        if run == "uso":
            ax.plot(steps, norms, color="black", lw=1.8, ls=(0, (4, 2)), label="USO model", zorder=6)
            over = sorted(r["diverged_at"] for r in uso_runs if r.get("diverged_at") is not None)
            if over and len(steps):
                ax.plot([steps[-1]], [norms[-1]], "x", color="black", ms=9, mew=2, zorder=7,
                        label=f"USO model overflows at step {over[0]} (last finite log)")
            continue
        ax.plot(steps, norms, color=colors[alpha], lw=1.3, label=rf"$\alpha$ = {alpha:.3g}", zorder=4)
        t = left.get(alpha)
        if t is not None and t in steps:
            ax.plot([t], [norms[list(steps).index(t)]], "o", color=colors[alpha], ms=5, mec="white",
                    zorder=5)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(r"$\|\theta_t\|$ (networks: $\|\theta_t\|/\alpha$)")
    ax.grid(alpha=0.3, lw=0.3)
    if curves:
        handles, _ = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], marker="o", ls="", color="grey", mec="white",
                              label="softmax leaves uniform"))
        ax.legend(handles=handles, fontsize=7, loc="upper left")
    if uso_runs and uso_runs[0].get("lr") is not None:
        eta = rf"$\eta_0$ = {uso_runs[0]['lr']:.3g} (networks: $\eta_0\,\alpha^{{2-L}}$)"
        title = f"{title}\n{eta}" if title else eta
    return finish(fig, title, path_stem)


STUDY = Study(
    name="icml/uso", paper=ICML, reproduces="Fig. 11 left, Eq. (3), App. E",
    title="alpha < 1 networks follow the uniform-softmax-output path until the softmax leaves uniform",
    config=Config, presets=PRESETS, validate=validate, prepare=outside.prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"run": ("run", "alpha", "seed")},
    chunks=batched(lambda config: config.batch_size, group=lambda config, p: (p["seed"], p["run"])),
    work=lambda config, p: outside.num_logs(config.steps, config.log_every), kinds=("run", "log"), legacy={"match": {"study": "outside"}},
    claims=(Claim("uso-path", "Fig. 11 left; Eq. (3); App. E",
                  "Small-alpha networks follow the USO path while their softmax is uniform, and "
                  "leave it later the smaller alpha.",
                  check_uso_path),),
    doc=__doc__)
