"""ICML Fig. 4 left: positive curvature against the subspace dimension d at α = T = 1.

One basis per seed with max(dims) columns; the point of dimension d projects onto its first d
columns (nested subspaces, one projection per seed). Positive curvature is bounded by √d and, for
the G-term, grows with d as the random model of Eq. (8) predicts
(:mod:`gzone.studies.icml._common.sweep`).

    gzone run icml/dim-sweep
    gzone run icml/dim-sweep --dims 2,5,10,20,50,100
    gzone run icml/dim-sweep --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gzone.engine import ICML, Study
from gzone.engine.config import check_dims, field
from gzone.studies.icml._common import sweep


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


def measure(ctx, chunk):
    return sweep.measure_sweep(ctx, chunk, mode="dim-grid", max_dim=max(ctx.config.dims))


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sweep.sweep_rows(records, "dim")


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    return sweep.sweep_figure(records, "dim", title=title, path_stem=path_stem)


STUDY = Study(
    name="icml/dim-sweep", paper=ICML, reproduces="Fig. 4 left",
    title="positive curvature of H, G-term, H-term against the subspace dimension d",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure, finished=sweep.finished,
    unused=sweep.unused, growable=sweep.GROWABLE, kinds=("subspace", "full"), legacy={"match": {"mode": "dim-grid"}},
    doc=__doc__)
