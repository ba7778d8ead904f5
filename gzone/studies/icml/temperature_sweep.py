"""ICML Fig. 1 right: at the unscaled initialization (α = 1) the temperature alone recreates and
leaves the Goldilocks zone.

Since H(θ, T) = α² H(αθ, 1) with α = T^(−1/L) (Eq. 5), the default T grid is the image of an α
grid, T ∈ [α_max^(−L), α_min^(−L)]: each of its points reproduces one point of
the α sweep of Fig. 1 left (same seed, same basis), mirrored. The same sweep
(:mod:`gzone.studies.icml._common.sweep`) at α = 1 over T.

    gzone run icml/temperature-sweep
    gzone run icml/temperature-sweep --temperature-min 1e-3 --temperature-max 1e3
    gzone run icml/temperature-sweep --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gzone.engine import ICML, Claim, Study
from gzone.engine.config import check_at_least, check_positive, check_range, field
from gzone.studies.icml._common import sweep


@dataclasses.dataclass(frozen=True)
class Config(sweep.SweepConfig):
    """The T grid at α = 1 on a d-dimensional random subspace."""

    dim: int = field(50, "subspace dimension d")
    temperature_min: float | None = field(None, "smallest softmax temperature T (none: "
                                                "alpha_max^-L, so the grid mirrors an alpha sweep)")
    temperature_max: float | None = field(None, "largest softmax temperature T (none: alpha_min^-L)")
    alpha_min: float = field(1e-2, "the alpha range the default T grid mirrors: smallest alpha")
    alpha_max: float = field(1e2, "the alpha range the default T grid mirrors: largest alpha")
    num_points: int = field(21, "grid points of T (geometric)")


PRESETS = sweep.presets(tiny={"dim": 10, "num_points": 9}, cpu={"num_points": 13})


def validate(config: Config) -> None:
    sweep.validate_sweep(config)
    check_at_least(config, "dim", "num_points")
    check_positive(config, "alpha_min", "alpha_max", "temperature_min", "temperature_max")
    check_range(config, "alpha_min", "alpha_max")
    check_range(config, "temperature_min", "temperature_max")


def prepare(config: Config, data_dir: str | None) -> Any:
    return sweep.prepare_sweep(config, data_dir, config.dim, "dim")


def temperatures(config: Config, degree: int | None) -> list[float]:
    """The T grid: [temperature_min, temperature_max], by default the mirror of the α range
    (H(αθ, 1) = α⁻² H(θ, α⁻ᴸ), Eq. 5; L = 1 for a model that is not homogeneous)."""
    power = degree if degree is not None else 1
    t_min = config.temperature_min or config.alpha_max**-power
    t_max = config.temperature_max or config.alpha_min**-power
    return np.geomspace(t_min, t_max, config.num_points).tolist()


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    return sweep.sweep_points(config, [(1.0, t) for t in temperatures(config, setup.degree)],
                              [config.dim])


def measure(ctx, chunk):
    return sweep.measure_sweep(ctx, chunk, mode="temperature-grid", max_dim=ctx.config.dim)


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sweep.sweep_rows(records, "temperature")


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    return sweep.sweep_figure(records, "temperature", title=title, path_stem=path_stem)


STUDY = Study(
    name="icml/temperature-sweep", paper=ICML, reproduces="Fig. 1 right",
    title="the zone recreated at alpha = 1 by the softmax temperature alone",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure, finished=sweep.finished,
    unused=sweep.unused, growable=sweep.GROWABLE, kinds=("subspace", "full"), legacy={"match": {"mode": "temperature-grid"}},
    claims=(Claim("zone", "Eq. (5), (6); Fig. 1 right",
                  "At alpha = 1 a temperature sweep recreates the zone: positive curvature peaks "
                  "at intermediate T, vanishes at both ends, and coincides with ||G||_2 > ||H-term||_2.",
                  sweep.zone_check("temperature")),),
    doc=__doc__)
