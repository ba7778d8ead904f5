"""Claims as data (:mod:`gzone.engine.claims`): each check on constructed summaries where the
answer is known, in both directions, and :func:`evaluate` on records."""

import numpy as np
import pytest

from gzone import studies
from gzone.engine import claims
from gzone.studies.icml._common.sweep import VANISH_FRACTION, zone_check

ALPHAS = [0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0]
PEAKED = [0.01, 0.5, 2.0, 4.0, 2.5, 0.3, 0.02]  # PC(H): peak 4 at alpha = 1, ~0 at both ends
G_NORM = [1e-6, 1e-3, 1.0, 2.0, 1.5, 0.1, 1e-9]
H_NORM = [1e-4, 1e-2, 0.2, 0.3, 0.4, 0.5, 2.0]  # ||G|| > ||H-term|| exactly where PC(H) >= 2


def rows(pc=PEAKED, g=G_NORM, h=H_NORM, x=ALPHAS, spread=0.0):
    """sweep_rows-shaped summary rows (x_field alpha) of one (median) curve per term."""
    out = []
    for a, p, gn, hn in zip(x, pc, g, h):
        out.append({"space": "subspace", "alpha": a, "term": "hessian", "seeds": 3,
                    "positive_curvature": p, "pc_min": p - spread, "pc_max": p + spread,
                    "spectral_norm": max(gn, hn), "top_eigenvalue": max(gn, hn)})
        for term, norm in (("gterm", gn), ("hterm", hn)):
            out.append({"space": "subspace", "alpha": a, "term": term, "seeds": 3,
                        "positive_curvature": 0.0, "pc_min": 0.0, "pc_max": 0.0,
                        "spectral_norm": norm, "top_eigenvalue": norm})
    return out


def test_a_verdict_is_one_of_four():
    with pytest.raises(ValueError, match="verdict must be one of"):
        claims.Finding("probably", {}, "")


def test_zone_claim_holds_on_a_zone_and_reports_where():
    finding = zone_check("alpha")(rows())
    assert finding.verdict == claims.REPRODUCED
    assert finding.measured["alpha_peak"] == 1.0 and finding.measured["zone"] == [0.3, 3.0]
    assert finding.measured["g_over_hterm_in_zone"] == pytest.approx(min(1.0 / 0.2, 2.0 / 0.3, 1.5 / 0.4))


@pytest.mark.parametrize("change", [
    {"pc": sorted(PEAKED)},                          # monotone: the peak sits at an end
    {"pc": [1.0, *PEAKED[1:]]},                      # does not vanish at the small end
    {"h": [*H_NORM[:4], 2.0, *H_NORM[5:]]},          # ||G|| < ||H-term|| inside the zone
    {"g": [*G_NORM[:-1], 5.0]},                      # ||G|| > ||H-term|| at the large end
    {"pc": [-v for v in PEAKED]},                    # negative curvature everywhere
])
def test_zone_claim_fails_when_any_part_fails(change):
    assert zone_check("alpha")(rows(**change)).verdict == claims.NOT_REPRODUCED


def test_zone_claim_is_inconclusive_when_seeds_or_points_cannot_tell():
    level = VANISH_FRACTION * max(PEAKED)
    assert zone_check("alpha")(rows(spread=2 * level)).verdict == claims.INCONCLUSIVE
    short = {k: v[2:6] for k, v in {"pc": PEAKED, "g": G_NORM, "h": H_NORM, "x": ALPHAS}.items()}
    short.update(pc=[0.01, 4.0, 2.5, 0.02], g=[0.1, 2.0, 1.5, 0.1])  # a zone, but 4 points
    assert zone_check("alpha")(rows(**short)).verdict == claims.INCONCLUSIVE


def _records(pc, seeds=2):
    """alpha-sweep subspace records whose summary is ``rows(pc)`` (the same value per seed)."""
    return [{"kind": "subspace", "alpha": r["alpha"], "term": r["term"], "seed": s,
             "positive_curvature": r["positive_curvature"], "spectral_norm": r["spectral_norm"],
             "top_eigenvalue": r["top_eigenvalue"]}
            for r in rows(pc) for s in range(seeds)]


def test_evaluate_gives_one_record_per_claim_and_says_when_the_scale_is_why():
    study = studies.get("icml/alpha-sweep")
    good = claims.evaluate(study, _records(PEAKED), "default")
    assert [r["verdict"] for r in good] == [claims.REPRODUCED] * len(study.claims)
    assert set(good[0]) == {"study", "claim", "reference", "statement", "measured", "expected",
                            "verdict", "scale"}
    assert claims.evaluate(study, _records(PEAKED), "tiny")[0]["verdict"] == claims.REPRODUCED
    flat = list(np.linspace(1, 2, len(ALPHAS)))
    assert claims.evaluate(study, _records(flat), "default")[0]["verdict"] == claims.NOT_REPRODUCED
    assert claims.evaluate(study, _records(flat), "tiny")[0]["verdict"] == claims.NOT_AT_THIS_SCALE


@pytest.mark.parametrize("name", [n for n, s in studies.STUDIES.items() if s.claims])
def test_claims_evaluate_on_the_tiny_run(name, tiny):
    run = tiny(name)
    found = claims.evaluate(run.study, run.records, "tiny")
    assert [r["claim"] for r in found] == [c.id for c in run.study.claims]
    assert all(r["verdict"] in claims.VERDICTS and r["measured"] for r in found)


def invariant_rows(pc=(3.8, 4.0, 0.05), power=-2.0, ratio=1.8, alphas=ALPHAS):
    """alpha-temperature summary rows: constant positive curvature per term, spectral norms
    proportional to alpha**power with ||G|| / ||H-term|| = ratio."""
    norms = {"hessian": ratio + 1, "gterm": ratio, "hterm": 1.0}
    return [{"space": "subspace", "alpha": a, "term": term, "seeds": 2,
             "positive_curvature": p if not callable(p) else p(a), "pc_min": None, "pc_max": None,
             "spectral_norm": norms[term] * a**power, "top_eigenvalue": None}
            for a in alphas for term, p in zip(("hessian", "gterm", "hterm"), pc)]


def test_invariance_claim_holds_when_eq5_does_and_fails_when_it_does_not():
    from gzone.studies.icml.alpha_temperature import check_invariance
    assert check_invariance(invariant_rows()).verdict == claims.REPRODUCED
    drifting = (3.8, 4.0, lambda a: 0.05 * (1 + 0.01 * np.log10(a)))  # H-term PC moves by 2 %
    for bad in (invariant_rows(pc=drifting), invariant_rows(power=-1.0)):  # T = alpha^L off
        assert check_invariance(bad).verdict == claims.NOT_REPRODUCED
    missing = invariant_rows()
    missing[4]["spectral_norm"] = None
    assert check_invariance(missing).verdict == claims.NOT_REPRODUCED
