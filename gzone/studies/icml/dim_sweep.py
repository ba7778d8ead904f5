"""ICML Fig. 4 left: positive curvature against the subspace dimension d at α = T = 1.

One basis per seed with max(dims) columns; the point of dimension d projects onto its first d
columns (nested subspaces, one projection per seed). Positive curvature is bounded by √d and, for
the G-term, grows with d as the random model of Eq. (8) predicts
(:mod:`gzone.studies.icml._common.sweep`). Next to the three ``subspace`` records each point has
an ``eq8`` record: Eq. (8) at that d, with σ_c², σ_e² estimated from the logit gradients in the
same first d columns and Γ_p of the real softmax outputs (:func:`.inside.eq8_prediction`, the
recipe of Fig. 3; none for d < K); the figure overlays it on the G-term.

    gzone run icml/dim-sweep
    gzone run icml/dim-sweep --dims 2,5,10,20,50,100
    gzone run icml/dim-sweep --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from gzone import models, objective
from gzone.engine import ICML, Claim, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, series
from gzone.engine.config import check_dims, field
from gzone.engine.study import PointKey, Record
from gzone.engine.summary import band, mean_entropy, median_band
from gzone.jacobian import logit_tangents
from gzone.studies.icml._common import inside, sweep


@dataclasses.dataclass(frozen=True)
class Config(sweep.SweepConfig):
    """Nested random subspaces of growing dimension at α = T = 1."""

    dims: tuple[int, ...] = field((2, 5, 10, 20, 50, 100, 200),
                                  "subspace dimensions d, e.g. 2,5,10,20,50")


PRESETS = sweep.presets(tiny={"dims": (2, 5, 10)}, cpu={"dims": (2, 5, 10, 20, 50, 100)})


def validate(config: Config) -> None:
    sweep.validate_sweep(config)
    check_dims(config, "dims")


def prepare(config: Config, data_dir: str | None) -> Any:
    return sweep.prepare_sweep(config, data_dir, max(config.dims), "dims")


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    return sweep.sweep_points(config, [(1.0, 1.0)], config.dims)


def finished(config: Config, records: list[Record]) -> set[PointKey]:
    """A point is finished once the sweep says so (:func:`.sweep.finished`) and its ``eq8``
    record exists."""
    eq8 = {(r["seed"], r["dim"]) for r in records if r.get("kind") == "eq8"}
    return {k for k in sweep.finished(config, records) if (dict(k)["seed"], dict(k)["dim"]) in eq8}


def eq8_record(ctx, point: dict[str, Any], max_dim: int) -> Record:
    """Eq. (8) at the point's d: logit gradients in the first d columns of the seed's basis
    (one forward-mode pass per seed, sliced) and the softmax outputs at (α, T)."""
    alpha, temperature, seed, dim = (point[f] for f in ("alpha", "temperature", "seed", "dim"))
    key = (alpha, temperature, seed)
    last = ctx.state.get("eq8-last")
    if last is None or last[0] != key:
        params, basis = ctx.state[("seed", seed)]  # made by sweep.measure_sweep for this point
        logits, jr = logit_tangents(ctx.setup.model.apply, models.scale(params, alpha), basis,
                                    ctx.state["batches"][max_dim])
        ctx.state["eq8-last"] = last = (key, (objective.probs(logits, temperature), jr))
    probs, jr = last[1]
    _, eq8 = inside.eq8_prediction(probs, jr[:, :, :dim])
    return {"kind": "eq8", "alpha": alpha, "temperature": temperature, "seed": seed, "dim": dim,
            "n_samples": int(probs.shape[0]), "mean_entropy": mean_entropy(probs), **eq8}


def measure(ctx, chunk):
    max_dim = max(ctx.config.dims)
    done = ctx.cached("eq8-done", lambda: {(r["seed"], r["dim"]) for r in ctx.existing
                                           if r.get("kind") == "eq8"})
    for point in chunk:
        yield from sweep.measure_sweep(ctx, [point], mode="dim-grid", max_dim=max_dim)
        if (point["seed"], point["dim"]) not in done:
            yield [eq8_record(ctx, point, max_dim)]
            done.add((point["seed"], point["dim"]))


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`.sweep.sweep_rows` over d; each subspace G-term row also holds ``eq8_pc``, the
    median over seeds of Eq. (8) at that d (None where d < K or the run has no ``eq8``
    records)."""
    rows = sweep.sweep_rows(records, "dim")
    predicted: dict[int, list] = {}
    for r in records:
        if r.get("kind") == "eq8":
            predicted.setdefault(r["dim"], []).append(r["predicted_positive_curvature"])
    for row in rows:
        if row["space"] == "subspace" and row["term"] == "gterm":
            stats = band(predicted.get(row["dim"], []))
            row["eq8_pc"] = None if stats is None else stats[0]
    return rows


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """The zone figure over d (:func:`.sweep.sweep_figure`, with the √d bound) and, on the
    G-term, Eq. (8) across d: median and min/max band over seeds (dotted)."""
    from gzone import plots

    table: dict[int, list] = {}
    for r in records:
        if r.get("kind") == "eq8":
            table.setdefault(r["dim"], []).append(r["predicted_positive_curvature"])
    drawn = sweep.sweep_figure([r for r in records if r.get("kind") != "eq8"], "dim",
                               title=title, path_stem=None)
    dims, med, low, high = median_band(table)
    if np.isfinite(med).any():
        ax = drawn[0].axes[0]
        color = plots.TERM_STYLE["gterm"]["color"]
        ax.plot(dims, med, ls=":", marker="^", ms=3, color=color,
                label=r"$\mathbb{E}G_*$, Eq. (8)")
        ax.fill_between(dims, low, high, color=color, alpha=0.1, lw=0)
        old = ax.get_legend()
        handles = [h for h in old.legend_handles] if old else []
        ax.legend(handles=[*handles, *ax.get_lines()[-1:]], fontsize=7)
    plots.save(drawn[0], path_stem)
    if len(drawn) > 1 and path_stem is not None:
        plots.save(drawn[1], f"{path_stem}-densities")
    return drawn


#: relative float32 slack on the √d bound of positive curvature (Tr/‖·‖_F ≤ √rank ≤ √d)
BOUND_TOL = 1e-4
#: the Eq. (8) part needs this many d ≥ K to say how the curvature grows across d
MIN_EQ8_DIMS = 2


def check_dimension(rows: list[dict[str, Any]]) -> Finding:
    """Fig. 4 left and Eq. (8): the seeds' median positive curvature of the G-term rises with d
    at every step of the grid, no seed exceeds √d, and at every d ≥ K Eq. (8) lies within
    ``inside.EQ8_REL_TOL`` of it (relative to the true value). Inconclusive with fewer than 3
    d or fewer than ``MIN_EQ8_DIMS`` d with Eq. (8) (d < K, or a run without ``eq8``
    records)."""
    tol = inside.EQ8_REL_TOL
    expected = (f"median PC(G) increasing in d, every seed's PC(G) <= sqrt(d); "
                f"|Eq. (8) - PC(G)| <= {tol} x PC(G) at every d >= K (at least {MIN_EQ8_DIMS})")
    dims, pc = series(rows, "dim", "gterm", "positive_curvature")
    _, high = series(rows, "dim", "gterm", "pc_max")
    _, eq8 = series(rows, "dim", "gterm", "eq8_pc")
    if len(dims) < 3 or any(v is None for v in (*pc, *high)):
        return Finding(INCONCLUSIVE, {"dims": dims}, expected)
    gaps = [(d, inside.relative_gap(p, e)) for d, p, e in zip(dims, pc, eq8) if e is not None]
    measured = {"dims": dims, "pc_gterm": pc, "pc_gterm_max": high,
                "sqrt_d": [math.sqrt(d) for d in dims], "eq8_pc": eq8,
                "max_rel_gap": max((g for _, g in gaps if g is not None), default=None)}
    bounded = all(h <= math.sqrt(d) * (1 + BOUND_TOL) for d, h in zip(dims, high))
    grows = all(b > a for a, b in zip(pc, pc[1:]))
    if not (bounded and grows):
        return Finding(NOT_REPRODUCED, measured, expected)
    if len(gaps) < MIN_EQ8_DIMS or any(g is None for _, g in gaps):
        return Finding(INCONCLUSIVE, measured, expected)
    return Finding(REPRODUCED if measured["max_rel_gap"] <= tol else NOT_REPRODUCED, measured,
                   expected)


STUDY = Study(
    name="icml/dim-sweep", paper=ICML, reproduces="Fig. 4 left",
    title="positive curvature of H, G-term, H-term against the subspace dimension d",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure, finished=finished,
    unused=sweep.unused, growable=sweep.GROWABLE, kinds=("subspace", "full", "eq8"),
    legacy={"match": {"mode": "dim-grid"}},
    claims=(Claim("dimension", "Fig. 4 left; Eq. (8)",
                  "The positive curvature of the G-term grows with the subspace dimension d as "
                  "Eq. (8) predicts, and never exceeds sqrt(d).", check_dimension),),
    doc=__doc__)
