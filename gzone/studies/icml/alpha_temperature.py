"""ICML Fig. 1 middle and Eq. (5): with the temperature T = α^L the zone does not depend on α.

For a homogeneous network of degree L, H(αθ, T = α^L) = α⁻² H(θ, 1) (Eq. 5): the softmax outputs
are those of θ0 and every curvature metric of scale-free form (positive curvature, local
convexity) is the same at every α; the spectral norms follow α⁻² exactly. The α sweep of Fig. 1
left (:mod:`gzone.studies.icml._common.sweep`) at T = α^L.

    gzone run icml/alpha-temperature
    gzone run icml/alpha-temperature --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gzone.engine import ICML, ConfigError, Study
from gzone.studies.icml._common import sweep


@dataclasses.dataclass(frozen=True)
class Config(sweep.AlphaGridConfig):
    """The α grid at T = α^L on a d-dimensional random subspace."""


PRESETS = sweep.ALPHA_PRESETS


def prepare(config: Config, data_dir: str | None) -> Any:
    setup = sweep.prepare_sweep(config, data_dir, config.dim, "dim")
    if setup.degree is None:
        raise ConfigError("model", f"T = alpha^L needs a homogeneous network; {config.model} is "
                                   "not: choose another {name}")
    return setup


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    alphas = np.geomspace(config.alpha_min, config.alpha_max, config.num_points).tolist()
    return sweep.sweep_points(config, [(a, a**setup.degree) for a in alphas], [config.dim])


def measure(ctx, chunk):
    return sweep.measure_sweep(ctx, chunk, mode="alpha-temperature", max_dim=ctx.config.dim)


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sweep.sweep_rows(records, "alpha")


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    return sweep.sweep_figure(records, "alpha", title=title, path_stem=path_stem)


STUDY = Study(
    name="icml/alpha-temperature", paper=ICML, reproduces="Fig. 1 middle, Eq. (5)",
    title="the alpha sweep at T = alpha^L: curvature constant in alpha",
    config=Config, presets=PRESETS, validate=sweep.validate_alpha_grid, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure, finished=sweep.finished,
    unused=sweep.unused, growable=sweep.GROWABLE, kinds=("subspace", "full"), legacy={"match": {"mode": "alpha-temperature"}},
    doc=__doc__)
