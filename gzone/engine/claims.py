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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_AT_THIS_SCALE = "not at this scale"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_AT_THIS_SCALE)


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
