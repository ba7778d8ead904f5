"""What the checks of the Fort & Scherlis claims share (issue 19): the band of radii with an
excess of positive curvature (the Goldilocks zone) on a curve against the radius, trends across
the hyperplane dimension d, a value against a target within a tolerance, and the worst of
several verdicts. Plain functions of summary values (None where nothing was measured).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

#: the band (zone) of a curve: the radii around its peak where the excess is at least this
#: fraction of the peak — as the ICML zone claim's ZONE_FRACTION
BAND_FRACTION = 0.5
#: in the zone Tr H/‖H‖ is "significantly greater than 1" (Sec. 2.4; obs. 2)
TRACE_RATIO_MIN = 1.0
#: a fraction of positive eigenvalues is an excess above 1/2 when it exceeds this many binomial
#: standard deviations 0.5/sqrt(d × seeds) (conservative: eigenvalues repel, so they fluctuate less)
NOISE_Z = 2.0
#: a trend across d: at least this fraction of the pairs of d's go its way; "no decrease": at
#: most NO_TREND_PAIRS of them go down (as many as would by chance)
TREND_PAIRS = 0.8
NO_TREND_PAIRS = 0.5
#: a measured value agrees with a prediction within this many standard errors (several radii
#: are tested at once, so three rather than two)
AGREE_Z = 3.0
#: the width of a confidence interval, in standard errors, against a tolerance
CI_Z = 2.0
_ORDER = {REPRODUCED: 0, INCONCLUSIVE: 1, NOT_REPRODUCED: 2}


def finite(*values: Any) -> bool:
    """Every value is a finite number (not None, not NaN)."""
    return all(v is not None and math.isfinite(v) for v in values)


def worst(verdicts: Iterable[str]) -> str:
    """The weakest of several verdicts: not reproduced, else inconclusive, else reproduced
    (inconclusive when there are none)."""
    found = list(verdicts)
    return max(found, key=_ORDER.__getitem__) if found else INCONCLUSIVE


@dataclasses.dataclass(frozen=True)
class Band:
    """An excess against the radius factor x: its peak and the contiguous band around the peak
    where it is at least ``BAND_FRACTION`` × the peak."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    peak_index: int
    first: int
    last: int

    @property
    def peak(self) -> float:
        return self.y[self.peak_index]

    @property
    def interior(self) -> bool:
        """The peak lies inside the grid, not at one of its ends."""
        return 0 < self.peak_index < len(self.x) - 1

    @property
    def closed(self) -> bool:
        """The band ends inside the grid on both sides, and the excess at both grid ends is below
        the band's level (no second rise at an end)."""
        level = BAND_FRACTION * self.peak
        return (self.first > 0 and self.last < len(self.x) - 1 and self.y[0] < level
                and self.y[-1] < level)

    def contains(self, x: float) -> bool:
        return self.x[self.first] <= x <= self.x[self.last]

    def summary(self) -> dict[str, Any]:
        """The numbers a reader needs: the peak, where it is, the band and the grid's ends."""
        return {"peak": self.peak, "peak_at": self.x[self.peak_index],
                "band": [self.x[self.first], self.x[self.last]], "ends": [self.y[0], self.y[-1]]}


def find_band(x: Sequence[float], y: Sequence[float | None]) -> Band | None:
    """The :class:`Band` of the excess ``y`` over the radius factors ``x`` (ascending); None with
    fewer than 3 points or a missing value."""
    if len(x) < 3 or not finite(*y):
        return None
    peak_index = max(range(len(y)), key=y.__getitem__)
    level = BAND_FRACTION * y[peak_index]
    first = last = peak_index
    while first > 0 and y[first - 1] >= level:
        first -= 1
    while last < len(y) - 1 and y[last + 1] >= level:
        last += 1
    return Band(tuple(x), tuple(y), peak_index, first, last)


def band_verdict(band: Band | None, *, minimum: float = 0.0, noise: float = 0.0) -> str:
    """A zone on a curve: reproduced when the peak exceeds ``minimum`` (the claim's threshold)
    and ``noise``, lies inside the grid and the band closes on both sides. Not reproduced
    without a peak above ``minimum``, or with the peak at a grid end (no band: the excess grows
    to the end). Inconclusive without a curve, with the peak within the noise, or with the band
    running past a grid end (the grid does not reach that edge)."""
    if band is None:
        return INCONCLUSIVE
    if band.peak <= minimum:
        return NOT_REPRODUCED
    if band.peak <= noise:
        return INCONCLUSIVE
    if not band.interior:
        return NOT_REPRODUCED
    return REPRODUCED if band.closed else INCONCLUSIVE


def fraction_noise(dim: int, seeds: int) -> float:
    """``NOISE_Z`` binomial standard deviations of a fraction of d × seeds fair signs."""
    return NOISE_Z * 0.5 / math.sqrt(max(dim * seeds, 1))


def decreasing_pairs(values: Sequence[float]) -> float:
    """The fraction of pairs i < j with values[j] < values[i] (values in the order of d); NaN
    with fewer than two values."""
    pairs = [(a, b) for i, a in enumerate(values) for b in values[i + 1:]]
    return sum(b < a for a, b in pairs) / len(pairs) if pairs else float("nan")


def plane_curves(rows: list[dict[str, Any]], field: str,
                 **match: Any) -> dict[int, tuple[list[float], list[Any], int]]:
    """d -> (radius factors ascending, ``field``, fewest seeds) of the plane summary rows
    (:func:`gzone.studies.fort._common.plane_rows`) that match ``match``."""
    picked: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if isinstance(r.get("dim"), int) and "positive_eigenvalues" in r and all(
                r.get(k) == v for k, v in match.items()):
            picked.setdefault(r["dim"], []).append(r)
    out = {}
    for dim, group in sorted(picked.items()):
        group.sort(key=lambda r: r["radius_factor"])
        out[dim] = ([r["radius_factor"] for r in group], [r.get(field) for r in group],
                    min(r.get("seeds") or 1 for r in group))
    return out


def eigenvalue_excess(values: list[Any]) -> list[float | None]:
    """The fraction of positive eigenvalues above 1/2."""
    return [None if v is None else v - 0.5 for v in values]


def tolerance_verdict(value: float | None, stderr: float | None, target: float,
                      tolerance: float) -> str:
    """``value`` within ``tolerance`` of ``target``: reproduced when its ±``CI_Z`` × stderr
    interval lies inside, not reproduced when it lies outside, inconclusive when it straddles
    the edge or nothing was measured."""
    if not finite(value):
        return INCONCLUSIVE
    spread = CI_Z * stderr if finite(stderr) else math.inf
    off = abs(value - target)
    if off + spread <= tolerance:
        return REPRODUCED
    return NOT_REPRODUCED if off - spread > tolerance else INCONCLUSIVE


def quantities(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``{"quantity", "value"}`` rows of a summary as a dict."""
    return {r["quantity"]: r.get("value") for r in rows if "quantity" in r}


def inside_band_verdict(band: Band | None, x: float, *, minimum: float = 0.0,
                        noise: float = 0.0) -> str:
    """``x`` (e.g. the Xavier radius factor 1) lies in the band: reproduced or not by where the
    band is; not reproduced without a peak above ``minimum`` (no zone); inconclusive without a
    curve, with the peak within the noise or at a grid end (the band's level is unknown)."""
    if band is None:
        return INCONCLUSIVE
    if band.peak <= minimum:
        return NOT_REPRODUCED
    if band.peak <= noise or not band.interior:
        return INCONCLUSIVE
    return REPRODUCED if band.contains(x) else NOT_REPRODUCED
