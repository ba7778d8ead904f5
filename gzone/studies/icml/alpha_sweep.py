"""ICML Fig. 1 left and Fig. 2: the Goldilocks zone along the ray α·θ0 at T = 1.

Positive curvature Tr/‖·‖_F (Eq. 2) and the spectral norms of the Hessian, the G-term and the
H-term (Eq. 4) on a random d-plane, for α on a log grid and several seeds
(:mod:`gzone.studies.icml._common.sweep`). The zone is where ‖G‖₂ > ‖H-term‖₂ (Eq. 6); with
``--full-space`` the same three terms are also measured in the full parameter space.

    gzone run icml/alpha-sweep
    gzone run icml/alpha-sweep --full-space
    gzone run icml/alpha-sweep --basis sparse --init xavier
    gzone run icml/alpha-sweep --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gzone.engine import ICML, Claim, Study
from gzone.studies.icml._common import sweep


@dataclasses.dataclass(frozen=True)
class Config(sweep.AlphaGridConfig):
    """The α grid at T = 1 on a d-dimensional random subspace."""


PRESETS = sweep.ALPHA_PRESETS


def prepare(config: Config, data_dir: str | None) -> Any:
    return sweep.prepare_sweep(config, data_dir, config.dim, "dim")


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    alphas = np.geomspace(config.alpha_min, config.alpha_max, config.num_points).tolist()
    return sweep.sweep_points(config, [(a, 1.0) for a in alphas], [config.dim])


def measure(ctx, chunk):
    return sweep.measure_sweep(ctx, chunk, mode="alpha-grid", max_dim=ctx.config.dim)


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sweep.sweep_rows(records, "alpha")


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    return sweep.sweep_figure(records, "alpha", title=title, path_stem=path_stem)


STUDY = Study(
    name="icml/alpha-sweep", paper=ICML, reproduces="Fig. 1 left, Fig. 2",
    title="positive curvature and spectral norms of H, G-term, H-term along alpha*theta0 (T = 1)",
    config=Config, presets=PRESETS, validate=sweep.validate_alpha_grid, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure, finished=sweep.finished,
    unused=sweep.unused, growable=sweep.GROWABLE, kinds=("subspace", "full"), legacy={"match": {"mode": "alpha-grid"}},
    claims=(Claim("zone", "Eq. (6); Fig. 1 left, Fig. 2",
                  "Positive curvature of the Hessian peaks at intermediate alpha and vanishes at "
                  "both ends; ||G||_2 > ||H-term||_2 inside this zone and < at both ends.",
                  sweep.zone_check("alpha")),),
    doc=__doc__)
