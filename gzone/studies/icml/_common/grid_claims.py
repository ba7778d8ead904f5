"""The claims of ICML Sec. 5 (Fig. 7, 8 and 9) that the training grid's summary rows
(:func:`gzone.studies.icml._common.grid.rows`, one per α) confirm or refute, and the small
statistics they share. Each check takes those rows and returns a :class:`Finding`
(:mod:`gzone.engine.claims`); the studies declare the claims.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gzone.engine import Claim, Finding
from gzone.engine.claims import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    fraction_verdict,
    wilson_interval,
)
from gzone.studies.icml._common.grid import ADMISSIBLE, OUTCOMES, ZERO_LOGIT_MARK

Rows = list[dict[str, Any]]

#: the presets where the Sec. 5 grid shows the paper's effects (both of its networks)
GRID_SCALES = ("default", "cpu", "paper", "fashion-cpu", "lenet300-fashion", "lenet5-cifar10",
               "lenet5-cifar10-cpu")
#: fewest points a fitted trend needs
MIN_POINTS = 3
#: "mostly": more than half, by the 95 % Wilson interval of the fraction
MOSTLY = 0.5


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """The least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


# ----------------------------------------------------------------------------- Fig. 8 left


#: App. E: "the maximum admissible base learning rate η0 that yields convergence is linearly
#: related to α" — a log-log slope of 1; "roughly": within this stated tolerance
STAIRCASE_SLOPE = 1.0
STAIRCASE_TOL = 0.3


def check_staircase(rows: Rows) -> Finding:
    """Fig. 8 left, App. E: over α < 1 the staircase edge — the geometric mean of the largest η0
    that trains and the next η0 tried above it — has log-log slope 1 ± ``STAIRCASE_TOL`` in α.
    Left out: α where the largest η0 of the grid trains (the edge lies above the grid) and α
    where nothing trains (the staircase's end, which the paper puts down to the limited number
    of epochs). The grid brackets each edge within one η0 step, so a slope off by more than the
    tolerance but less than tolerance + step / (span of log α) is inconclusive, as are fewer
    than ``MIN_POINTS`` edges."""
    expected = (f"log-log slope of the largest trainable lr0 against alpha < 1 within "
                f"{STAIRCASE_TOL} of {STAIRCASE_SLOPE} (at least {MIN_POINTS} alphas)")
    points = sorted((r["alpha"], r["largest_trained_lr0"], r["next_lr0"]) for r in rows
                    if r["alpha"] < 1 and r.get("largest_trained_lr0") and r.get("next_lr0"))
    measured: dict[str, Any] = {"alphas": [p[0] for p in points],
                                "edge_lr0": [math.sqrt(p[1] * p[2]) for p in points]}
    if len(points) < MIN_POINTS:
        return Finding(INCONCLUSIVE, {**measured, "points": len(points)}, expected)
    alpha, low, high = (np.asarray(v, float) for v in zip(*points))
    slope = loglog_slope(alpha, measured["edge_lr0"])
    resolution = float(np.max(np.log(high / low)) / np.log(alpha.max() / alpha.min()))
    measured.update(slope=slope, expected_slope=STAIRCASE_SLOPE, slope_resolution=resolution)
    off = abs(slope - STAIRCASE_SLOPE)
    verdict = (REPRODUCED if off <= STAIRCASE_TOL else
               INCONCLUSIVE if off <= STAIRCASE_TOL + resolution else NOT_REPRODUCED)
    return Finding(verdict, measured, expected)


#: Sec. 5: networks "may not only converge when initialized outside the Goldilocks zone";
#: an α outside the zone is as well trained when its best train accuracy is within this of
#: the best in the zone
AS_TRAINED_TOL = 0.01


def check_trained_outside_zone(rows: Rows) -> Finding:
    """Fig. 8, Sec. 5: some α outside the zone (‖G‖₂ < ‖H-term‖₂ at initialisation) trains as
    well as the best α inside it (best train accuracy within ``AS_TRAINED_TOL``): positive
    curvature is not needed to train."""
    expected = (f"some alpha outside the zone reaches the zone's best train accuracy within "
                f"{AS_TRAINED_TOL}")
    inside = [(r["best_train"], r["alpha"]) for r in rows
              if r.get("zone") is True and r.get("best_train") is not None]
    outside = [(r["best_train"], r["alpha"]) for r in rows
               if r.get("zone") is False and r.get("best_train") is not None]
    if not inside or not outside:
        return Finding(INCONCLUSIVE, {"alphas_in_zone": [a for _, a in inside],
                                      "alphas_outside_zone": [a for _, a in outside]}, expected)
    best_in = max(inside)[0]
    as_good = sorted(a for acc, a in outside if acc >= best_in - AS_TRAINED_TOL)
    measured = {"best_train_in_zone": best_in, "best_train_outside_zone": max(outside)[0],
                "alphas_outside_zone": sorted(a for _, a in outside),
                "alphas_outside_trained_as_well": as_good}
    return Finding(REPRODUCED if as_good else NOT_REPRODUCED, measured, expected)


# ----------------------------------------------------------------------------- Fig. 8 middle, right


def _fraction(k: int, n: int, threshold: float, names: tuple[str, str]) -> tuple[str, dict]:
    low, high = wilson_interval(k, n)
    return fraction_verdict(k, n, threshold), {
        names[0]: n, names[1]: k, "fraction": k / n if n else None, "interval_95": [low, high]}


def check_inadmissible_fails(rows: Rows) -> Finding:
    """Fig. 8 right: most runs with η·‖H‖₂ > 2 at initialisation (inadmissible) do not train
    (outcome diverged, zero logits or untrained): the 95 % Wilson interval of the fraction lies
    above ``MOSTLY``."""
    n = sum(r.get("inadmissible") or 0 for r in rows)
    k = sum(r.get("inadmissible_failed") or 0 for r in rows)
    verdict, measured = _fraction(k, n, MOSTLY, ("inadmissible_runs", "failed"))
    return Finding(verdict, measured, f"of the runs with eta*||H||_2 > {ADMISSIBLE:g} at init, "
                                      f"a fraction > {MOSTLY} (95 % Wilson interval) fails")


def check_too_large_lr(rows: Rows) -> Finding:
    """Fig. 8 middle, Sec. 5: above the staircase edge (η0 larger than the largest that trains
    at that α) a run diverges or ends with more than 75 % zero-logit samples, rather than
    merely failing to train: the 95 % Wilson interval of that fraction lies above ``MOSTLY``."""
    n = sum(r.get("above_edge") or 0 for r in rows)
    k = sum(r.get("above_edge_diverged_or_zero") or 0 for r in rows)
    verdict, measured = _fraction(k, n, MOSTLY, ("runs_above_edge", "diverged_or_zero_logits"))
    return Finding(verdict, measured, f"of the runs with lr0 above the largest trainable lr0, a "
                                      f"fraction > {MOSTLY} (95 % Wilson interval) diverges or "
                                      f"ends with > {ZERO_LOGIT_MARK:.0%} zero-logit samples")


# ----------------------------------------------------------------------------- Fig. 7


def outcome_table(rows: Rows) -> dict[str, dict[str, int]]:
    """Run outcomes counted over α < 1, α = 1, α > 1 and in all."""
    table = {side: dict.fromkeys(OUTCOMES, 0) for side in ("alpha<1", "alpha=1", "alpha>1", "all")}
    for r in rows:
        side = "alpha<1" if r["alpha"] < 1 else "alpha>1" if r["alpha"] > 1 else "alpha=1"
        for o in OUTCOMES:
            table[side][o] += r.get(o) or 0
            table["all"][o] += r.get(o) or 0
    return table


def check_taxonomy(rows: Rows) -> Finding:
    """Fig. 7: every outcome class occurs — runs that diverge, runs that end with zero logits,
    runs that train; for α < 1 both a network that circles back to the zone and trains and one
    that keeps diverging (diverged or zero logits); for α > 1 at least one of the paper's
    large-norm outcomes (diverge, zero logits, lazy training). The measured value is the table
    of outcome counts; ``untrained`` runs are outside Fig. 7 (App. E: too few epochs)."""
    expected = ("diverged, zero-logit and trained runs all occur; for alpha < 1 both trained and "
                "diverged/zero-logit runs; for alpha > 1 some diverged, zero-logit or trained run")
    table = outcome_table(rows)
    small, large, every = table["alpha<1"], table["alpha>1"], table["all"]
    if not sum(small.values()) or not sum(large.values()):
        return Finding(INCONCLUSIVE, {"outcomes": table, "missing": ["runs on both sides of 1"]},
                       expected)
    wanted = {"diverged": every["diverged"], "zero-logits": every["zero-logits"],
              "trained": every["trained"], "alpha<1 trained (circles back)": small["trained"],
              "alpha<1 keeps diverging": small["diverged"] + small["zero-logits"],
              "alpha>1 diverged, zero logits or lazy": large["diverged"] + large["zero-logits"]
              + large["trained"]}
    missing = [name for name, count in wanted.items() if count == 0]
    return Finding(NOT_REPRODUCED if missing else REPRODUCED,
                   {"outcomes": table, "missing": missing}, expected)


def taxonomy_claim(scales: tuple[str, ...] = GRID_SCALES) -> Claim:
    """The Fig. 7 claim, as the studies of the grid declare it."""
    return Claim("outcome-taxonomy", "Fig. 7; Sec. 5",
                 "Training outside the zone ends in the outcomes of Fig. 7: small-alpha networks "
                 "circle back and train or keep diverging (diverged / zero logits); large-alpha "
                 "networks diverge, develop zero logits or train lazily.",
                 check_taxonomy, scales=scales)


# ----------------------------------------------------------------------------- Fig. 9 right


#: "α ≫ 1" (the paper's Fig. 9 right: α = 1,000)
LARGE_ALPHA = 100.0
#: App. E: LeNet-300-100 at α ≫ 1 "reaches zero training error"; near 100 %: within this
NEAR_FULL_TRAIN = 0.02
#: App. E: its test accuracy "saturates at 75 % ..., which is 10 % lower than that of the
#: unscaled network"; "about": within the stated tolerance
TEST_GAP = 0.10
TEST_GAP_TOL = 0.05


def _row_at(rows: Rows, alpha: float) -> dict[str, Any] | None:
    return next((r for r in rows if math.isclose(r["alpha"], alpha)), None)


def check_large_alpha_accuracy(rows: Rows) -> Finding:
    """Fig. 9 right, App. E: at the largest α (≥ ``LARGE_ALPHA``) the best train accuracy over η0
    is within ``NEAR_FULL_TRAIN`` of 100 % and the best test accuracy is ``TEST_GAP`` ±
    ``TEST_GAP_TOL`` below that at α = 1."""
    expected = (f"at the largest alpha >= {LARGE_ALPHA:g}: train accuracy >= "
                f"{1 - NEAR_FULL_TRAIN:.2f}, test accuracy {TEST_GAP:.2f} +- {TEST_GAP_TOL:.2f} "
                f"below alpha = 1")
    ref, large = _row_at(rows, 1.0), max(rows, key=lambda r: r["alpha"], default=None)
    values = None if ref is None or large is None else (
        large["best_train"], large["best_test"], ref["best_test"])
    if values is None or large["alpha"] < LARGE_ALPHA or None in values:
        return Finding(INCONCLUSIVE, {"alphas": sorted(r["alpha"] for r in rows)}, expected)
    train, test, test_ref = values
    gap = test_ref - test
    measured = {"alpha": large["alpha"], "train_accuracy": train, "test_accuracy": test,
                "test_accuracy_alpha_1": test_ref, "test_gap": gap}
    holds = train >= 1 - NEAR_FULL_TRAIN and abs(gap - TEST_GAP) <= TEST_GAP_TOL
    return Finding(REPRODUCED if holds else NOT_REPRODUCED, measured, expected)


# ----------------------------------------------------------------------------- Sec. 5, LeNet-5


#: Sec. 5: "LeNet-5 does not perform above random for any α > 1.8 and any learning rate"
UNTRAINABLE_ABOVE = 1.8
#: CIFAR-10's chance level (10 classes), and by how much a best train accuracy (the maximum over
#: the logs and η0) may exceed it and still be "not above random"
CHANCE = 0.1
CHANCE_MARGIN = 0.05
#: the edge is resolved when the grid has an α in (1.8, 1.8 × this] (the log grid's next α
#: after 1 is 2.15, 20 % beyond it: "any α > 1.8" is then untested on (1.8, 2.15))
EDGE_RESOLUTION = 1.15


def check_untrainable_edge(rows: Rows) -> Finding:
    """Sec. 5 (Fig. 8 bottom left): at every α > ``UNTRAINABLE_ABOVE`` the best train accuracy
    over η0 is at most chance + ``CHANCE_MARGIN``, while some α ≤ 1.8 trains above it.
    Inconclusive when nothing trains (the budget cannot tell an edge), the grid has no α in
    (1.8, 1.8 × ``EDGE_RESOLUTION``] (the edge is not resolved) or a value is missing."""
    edge = UNTRAINABLE_ABOVE
    expected = (f"best train accuracy <= {CHANCE + CHANCE_MARGIN:.2f} at every alpha > {edge:g}, "
                f"with an alpha in ({edge:g}, {edge * EDGE_RESOLUTION:.3g}], and above it at "
                f"some alpha <= {edge:g}")
    level = CHANCE + CHANCE_MARGIN
    above = [r for r in rows if r["alpha"] > edge]
    trains = [r["alpha"] for r in rows if r.get("best_train") is not None and r["best_train"] > level]
    measured = {"best_train_above_edge": {f"{r['alpha']:.3g}": r.get("best_train") for r in above},
                "largest_alpha_above_chance": max(trains, default=None),
                "alphas_between_1_and_edge": sorted(r["alpha"] for r in rows if 1 < r["alpha"] <= edge)}
    if not above or any(r.get("best_train") is None for r in above):
        return Finding(INCONCLUSIVE, measured, expected)
    if any(r["best_train"] > level for r in above):
        return Finding(NOT_REPRODUCED, measured, expected)
    resolved = any(edge < r["alpha"] <= edge * EDGE_RESOLUTION for r in above)
    below_trains = any(a <= edge for a in trains)
    return Finding(REPRODUCED if resolved and below_trains else INCONCLUSIVE, measured, expected)
