"""A paper's claims as data: what a study's summary must show for a statement of the paper to hold.

Each study declares the claims it can test (``Study.claims``): an id, the paper reference, the
statement in a sentence, the presets (scales) where it is expected to be visible, and a check that
takes the study's summary rows and returns a :class:`Finding` — the measured value(s), what was
expected and a verdict. :func:`evaluate` runs them on a finished study and gives one record per
claim, the form ``claims.jsonl`` and the report take (issue 19).

A claim checked outside its scales that does not hold there is ``not at this scale``: a finding
about the scale, not about the paper.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_AT_THIS_SCALE = "not at this scale"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_AT_THIS_SCALE)


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n (95 % at z = 1.96); (0, 1) when n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def fraction_verdict(k: int, n: int, threshold: float) -> str:
    """Reproduced when the Wilson interval of k/n lies above ``threshold``, not reproduced when
    it lies below, inconclusive when it straddles it (or n = 0)."""
    low, high = wilson_interval(k, n)
    if n > 0 and low > threshold:
        return REPRODUCED
    if n > 0 and high < threshold:
        return NOT_REPRODUCED
    return INCONCLUSIVE


@dataclasses.dataclass(frozen=True)
class Finding:
    """What a check measured, what the paper leads one to expect, and the verdict."""

    verdict: str
    measured: Mapping[str, Any]
    expected: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


@dataclasses.dataclass(frozen=True)
class Claim:
    """A statement of a paper that a study's summary can confirm or refute."""

    id: str
    reference: str
    statement: str
    check: Callable[[list[dict[str, Any]]], Finding]
    #: presets where the paper's effect is expected to be visible
    scales: tuple[str, ...] = ("default", "cpu", "paper")


def evaluate(study: Any, records: list[dict[str, Any]], scale: str) -> list[dict[str, Any]]:
    """One record per claim of ``study`` on its ``records`` run at preset ``scale``: study, claim,
    reference, statement, measured, expected, verdict, scale."""
    rows = study.summarize(records)
    out = []
    for claim in study.claims:
        finding = claim.check(rows)
        verdict = finding.verdict
        if verdict in (NOT_REPRODUCED, INCONCLUSIVE) and scale not in claim.scales:
            verdict = NOT_AT_THIS_SCALE
        out.append({"study": study.name, "claim": claim.id, "reference": claim.reference,
                    "statement": claim.statement, "measured": dict(finding.measured),
                    "expected": finding.expected, "verdict": verdict, "scale": scale})
    return out


def series(rows: Sequence[Mapping[str, Any]], x_field: str, term: str, field: str,
           space: str = "subspace") -> tuple[list[float], list[float | None]]:
    """(x, ``field``) of the summary rows of one ``term`` in ``space``, x ascending."""
    picked = sorted((r[x_field], r.get(field)) for r in rows
                    if r.get("term") == term and r.get("space", "subspace") == space)
    return [x for x, _ in picked], [v for _, v in picked]
