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

from gzone.engine import ICML, Claim, ConfigError, Finding, Study
from gzone.engine.claims import NOT_REPRODUCED, REPRODUCED, series
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


#: relative spread over α allowed of a quantity Eq. (5) makes constant (float32 measurements
#: agree to ~3e-5 on the default run)
INVARIANCE_TOL = 1e-3
TERMS = ("hessian", "gterm", "hterm")


def relative_spread(values: list[float | None]) -> float:
    """(max − min) / max |·| of ``values``; inf with a missing value or all zeros."""
    v = np.array([np.nan if x is None else x for x in values], float)
    scale = np.max(np.abs(v)) if v.size else 0.0
    if not np.all(np.isfinite(v)) or scale == 0:
        return float("inf")
    return float((v.max() - v.min()) / scale)


def check_invariance(rows: list[dict[str, Any]]) -> Finding:
    """Eq. (5) at T = α^L: the median positive curvature of each term and ‖G‖₂/‖H-term‖₂ are the
    same at every α, and each spectral norm times α² is too."""
    spreads = {}
    for term in TERMS:
        x, pc = series(rows, "alpha", term, "positive_curvature")
        _, norm = series(rows, "alpha", term, "spectral_norm")
        spreads[f"pc_{term}"] = relative_spread(pc)
        spreads[f"norm_x_alpha2_{term}"] = relative_spread(
            [None if n is None else n * a**2 for a, n in zip(x, norm)])
    _, g = series(rows, "alpha", "gterm", "spectral_norm")
    _, h = series(rows, "alpha", "hterm", "spectral_norm")
    spreads["g_over_hterm"] = relative_spread(
        [None if a is None or b in (None, 0) else a / b for a, b in zip(g, h)])
    verdict = REPRODUCED if max(spreads.values()) <= INVARIANCE_TOL else NOT_REPRODUCED
    return Finding(verdict, {"relative_spread": spreads, "points": len(x)},
                   f"every relative spread over alpha <= {INVARIANCE_TOL}")


STUDY = Study(
    name="icml/alpha-temperature", paper=ICML, reproduces="Fig. 1 middle, Eq. (5)",
    title="the alpha sweep at T = alpha^L: curvature constant in alpha",
    config=Config, presets=PRESETS, validate=sweep.validate_alpha_grid, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure, finished=sweep.finished,
    unused=sweep.unused, growable=sweep.GROWABLE, kinds=("subspace", "full"), legacy={"match": {"mode": "alpha-temperature"}},
    claims=(Claim("invariance", "Eq. (5); Fig. 1 middle",
                  "With T = alpha^L the curvature metrics do not depend on alpha: positive "
                  "curvature and ||G||_2/||H-term||_2 are constant, spectral norms scale as "
                  "alpha^-2.",
                  check_invariance, scales=("tiny", "default", "cpu", "paper")),),
    doc=__doc__)
