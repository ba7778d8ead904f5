"""Fort & Scherlis observation 8: full-space training draws the radius into the Goldilocks zone.

Per seed, the Xavier draw θ0 moved to each radius factor c of ``drift_factors`` (c·θ0: every
weight matrix on its scaled shell) and trained in full space with Adam (full batch,
``train_lr``, ``train_steps`` steps) — the (c, seed) runs vmapped in batches, checkpointed and
resumed. ``log`` records hold ‖θ_t‖ (``parameter_norm``), the loss and accuracies at every logged
step; one ``run`` record per (c, seed) the initial, final and Xavier radii.

    gzone run fort/radius-drift
    gzone run fort/radius-drift --drift-factors 0.1,0.3,3,10 --train-steps 1000
    gzone run fort/radius-drift --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from gzone import training
from gzone.engine import FORT, Claim, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import check_alphas, check_at_least, field, run_settings
from gzone.engine.setup import seed_params
from gzone.engine.study import batched
from gzone.studies.fort import _claims as claims
from gzone.studies.fort import _common as common

#: "drawn toward the zone": training closes at least this fraction of a start's distance to the
#: Xavier radius (in log r; a stated tolerance: the paper gives no number)
DRIFT_MIN = 0.1


@dataclasses.dataclass(frozen=True)
class Config(common.TrainingConfig):
    """Full-space Adam from radii inside and outside the Xavier radius."""

    seeds: int = field(3, "seeds (theta0) per starting radius")
    drift_factors: tuple[float, ...] = field((0.1, 0.3, 1.0, 3.0, 10.0), "starting radii as "
                                             "factors of the Xavier radius")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {**common.TRAIN_TINY, "seeds": 1, "drift_factors": (0.3, 3.0)},
    "default": {},
    "cpu": {**common.MNIST, "n_samples": 2000, "n_test": 1000, "seeds": 2},
    "paper": {**common.MNIST, "n_samples": None, "n_test": None, "train_steps": 3000,
              "train_log_every": 10, "batch_size": None},
    "mnist": {**common.MNIST, "n_samples": None, "n_test": None, "train_steps": 3000,
              "train_log_every": 10},
}


def validate(config: Config) -> None:
    common.validate_training(config)
    check_at_least(config, "seeds")
    check_alphas(config, "drift_factors")


def prepare(config: Config, data_dir: str | None) -> Any:
    return common.load_train_test(config, data_dir)


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    return [{"kind": "run", "radius_factor": c, "seed": s} for s in range(config.seeds)
            for c in config.drift_factors]


def measure(ctx, chunk):
    config, setup = ctx.config, ctx.setup
    thetas = ctx.cached("thetas", lambda: {s: seed_params(setup, config.init, s)
                                           for s in range(config.seeds)})
    grid = training.train_grid(
        setup.model.apply, common.stack([common.scaled(thetas[p["seed"]], p["radius_factor"])
                                         for p in chunk]),
        setup.x, setup.y, lr=[config.train_lr] * len(chunk), steps=config.train_steps,
        log_every=config.train_log_every, x_test=setup.x_test, y_test=setup.y_test,
        optimizer="adam", sharpness=False, chunk_size=config.chunk_size,
        **run_settings(config), checkpoint_dir=ctx.checkpoint(), on_log=ctx.log_writer(chunk, common.TRAIN_LOG_FIELDS))
    records = []
    for j, p in enumerate(chunk):
        h = {f: grid.history[f][j] for f in training.HISTORY_FIELDS}
        logged = h["step"] >= 0
        diverged = int(grid.diverged_at[j])
        records.append({
            "kind": "run", **common.radius_fields(thetas[p["seed"]], p["radius_factor"]),
            "seed": p["seed"], "lr": config.train_lr,
            "final_radius": float(h["parameter_norm"][logged][-1]),
            "final_test_accuracy": float(h["test_accuracy"][logged][-1]),
            "final_train_accuracy": float(h["train_accuracy"][logged][-1]),
            "diverged_at": None if diverged < 0 else diverged,
            "flags": [] if diverged < 0 else ["diverged"]})
    yield records


def drift_curves(records: list[dict[str, Any]]) -> dict[tuple[float, int], tuple[np.ndarray, np.ndarray]]:
    """(radius factor, seed) -> (steps, ‖θ_t‖) from the ``log`` records."""
    curves: dict[tuple[float, int], list[tuple[int, float]]] = {}
    for r in records:
        if r.get("kind") == "log" and r.get("parameter_norm") is not None:
            curves.setdefault((r["radius_factor"], r["seed"]), []).append((r["step"], r["parameter_norm"]))
    return {k: tuple(np.array(a) for a in zip(*sorted(v))) for k, v in sorted(curves.items())}


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per radius factor (means over seeds): initial, final and Xavier radius, final accuracies."""
    rows: dict[float, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("kind") == "run":
            rows.setdefault(r["radius_factor"], []).append(r)
    return [{"radius_factor": c, "radius": float(np.mean([g["radius"] for g in group])),
             "final_radius": float(np.mean([g["final_radius"] for g in group])),
             "xavier_radius": float(np.mean([g["xavier_radius"] for g in group])),
             "final_test_accuracy": float(np.mean([g["final_test_accuracy"] for g in group])),
             "final_train_accuracy": float(np.mean([g["final_train_accuracy"] for g in group]))}
            for c, group in sorted(rows.items())]


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """‖θ_t‖ against the step (log scale) for starts inside and outside the Xavier radius
    (dotted)."""
    import matplotlib.pyplot as plt

    from gzone.plots import finish

    curves = drift_curves(records)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    if not curves:
        common.empty(ax, "log")
    factors = sorted({c for c, _ in curves})
    colors = common.colors(factors, "coolwarm")
    for (c, seed), (steps, norms) in curves.items():
        ax.plot(steps, norms, color=colors[c], lw=1.3,
                label=f"start at {c:g} $r_{{Xavier}}$" if seed == 0 else None)
    radii = [r["xavier_radius"] for r in records if r.get("kind") == "run"]
    if radii:
        ax.axhline(float(np.mean(radii)), color="0.4", ls=":", lw=1, label="Xavier radius")
    ax.set(yscale="log", xlabel="step", ylabel=common.RADIUS_LABEL,
           title="radius drift in full-space Adam training")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


def closed_fraction(start: float, final: float, xavier: float) -> float:
    """The fraction of the distance |log(r/r_X)| from the start to the Xavier radius that training
    closed (1: ends at r_X; 0: did not move; negative: moved away)."""
    before = abs(math.log(start / xavier))
    return 1 - abs(math.log(final / xavier)) / before


def check_drift(rows: list[dict[str, Any]]) -> Finding:
    """Obs. 8: full-space training draws the radius toward the zone (the Xavier radius, in the
    zone by concl. 7) from inside and from outside: every start off r_X closes at least
    ``DRIFT_MIN`` of its log distance to r_X, with starts on both sides."""
    expected = (f"every start inside and outside r_X closes >= {DRIFT_MIN} of its log distance "
                f"to r_X (starts on both sides)")
    starts = [r for r in rows
              if claims.finite(r.get("radius_factor")) and r["radius_factor"] != 1.0]
    closed = {f"{r['radius_factor']:g}": closed_fraction(r["radius"], r["final_radius"],
                                                          r["xavier_radius"])
              if claims.finite(r.get("radius"), r.get("final_radius"), r.get("xavier_radius"))
              and r["final_radius"] > 0 else None for r in starts}
    measured = {"closed_fraction": closed, "final_radius_factor": {
        f"{r['radius_factor']:g}": r["final_radius"] / r["xavier_radius"]
        if claims.finite(r.get("final_radius"), r.get("xavier_radius")) else None for r in starts}}
    inside = [r["radius_factor"] < 1 for r in starts]
    if not any(inside) or all(inside) or not claims.finite(*closed.values()):
        return Finding(INCONCLUSIVE, measured, expected)
    holds = all(v >= DRIFT_MIN for v in closed.values())
    return Finding(REPRODUCED if holds else NOT_REPRODUCED, measured, expected)


STUDY = Study(
    name="fort/radius-drift", paper=FORT, reproduces="observation 8",
    title="the parameter radius during full-space training from starts inside and outside the zone",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure, done={"run": ("radius_factor", "seed")},
    chunks=batched(lambda config: config.batch_size),
    work=lambda config, p: common.num_logs(config.train_steps, config.train_log_every),
    growable=("seeds",), kinds=("run", "log"), legacy={"match": {"study": "fort"}},
    claims=(Claim("drift-toward-zone", "Obs. 8",
                  "Initialized inside or outside the Goldilocks zone, full-space optimization "
                  "draws the radius toward the zone.", check_drift, scales=("cpu", "paper")),),
    doc=__doc__)
