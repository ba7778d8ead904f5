"""Fort & Scherlis Fig. 3: an excess of positive curvature on random hyperplanes, in a band of
radii around the Xavier radius.

Per (radius, seed) one projection RᵀMHMR onto the seed's largest random plane (the paper's sparse
basis, the per-layer metric M); its leading d × d blocks are the planes of every d in ``dims``
(nested, so the d-curves of a seed share directions). One ``plane`` record per (radius, seed, d):
the fraction of positive eigenvalues (Fig. 3a) and Tr H_d/‖H_d‖_F (Fig. 3b).

    gzone run fort/radius
    gzone run fort/radius --dims 5,10,20 --radius-min 0.3 --radius-max 3 --num-radii 7
    gzone run fort/radius --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gzone import subspace
from gzone.engine import FORT, Claim, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import check_choice, check_dims, field
from gzone.engine.setup import check_dim
from gzone.studies.fort import _claims as claims
from gzone.studies.fort import _common as common


@dataclasses.dataclass(frozen=True)
class Config(common.RadiiConfig):
    """Positive eigenvalues and Tr H/‖H‖ on random d-planes across radii."""

    dims: tuple[int, ...] = field((5, 10, 20, 50, 100), "hyperplane dimensions d, e.g. 5,10,20")
    basis: str = field("sparse", "random basis (the paper: sparse)", subspace.BASIS_KINDS)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {**common.TINY, "dims": (5, 10)},
    "default": {},
    "cpu": {**common.MNIST_CPU, "dims": (5, 10, 20, 50)},
    "paper": {**common.MNIST, "dims": (10, 20, 50, 100, 200)},
    "mnist": {**common.MNIST, "dims": (10, 20, 50, 100, 200)},
    "cifar10": {**common.CIFAR10, "dims": (10, 20, 50, 100, 200)},
}


def validate(config: Config) -> None:
    common.validate_radii(config)
    check_dims(config, "dims")
    check_choice(config, "basis", subspace.BASIS_KINDS)


def prepare(config: Config, data_dir: str | None) -> Any:
    setup = common.setup_for(config, data_dir)
    check_dim(setup, max(config.dims), name="dims")
    return setup


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    return common.plane_points(config, "plane")


def measure(ctx, chunk):
    return common.measure_planes(ctx, chunk, ctx.setup, ctx.config, tuple(ctx.config.dims))


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return common.plane_rows(records)


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """(a) fraction of positive eigenvalues of the plane Hessian against radius, one curve per d;
    (b) Tr H_d/‖H_d‖_F against d, one curve per radius."""
    import matplotlib.pyplot as plt

    from gzone.plots import DIM_LABEL, PLANE_POSITIVE_CURVATURE_LABEL, finish

    planes = [r for r in records if r.get("kind") == "plane"]
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 3.8))
    dims = sorted({r["dim"] for r in planes})
    colors = common.colors(dims, "plasma")
    for d in dims:
        common.band(ax_a, planes, "radius", "local_convexity", lambda r, d=d: r["dim"] == d,
                    colors[d], f"$d$ = {d}")
    if not planes:
        common.empty(ax_a, "plane")
        common.empty(ax_b, "plane")
    ax_a.axhline(0.5, color="0.6", lw=0.8)
    common.xavier(ax_a, planes)
    ax_a.set(xscale="log", xlabel=common.RADIUS_LABEL, ylabel=common.POSITIVE_EIGENVALUES_LABEL,
             title="(a) positive eigenvalues on random $d$-planes")
    factors = sorted({r["radius_factor"] for r in planes})
    shown = factors[:: max(1, len(factors) // 6)]
    fcolors = common.colors(shown)
    for c in shown:
        group = [r for r in planes if r["radius_factor"] == c and r.get("positive_curvature") is not None]
        ds = sorted({r["dim"] for r in group})
        med = [np.median([r["positive_curvature"] for r in group if r["dim"] == d]) for d in ds]
        radius = np.mean([r["radius"] for r in group]) if group else np.nan
        ax_b.plot(ds, med, marker="o", ms=3, color=fcolors[c],
                  label=f"$r$ = {radius:.3g}" + (" (Xavier)" if abs(c - 1) < 1e-9 else ""))
    ax_b.set(xscale="log", xlabel=DIM_LABEL, ylabel=PLANE_POSITIVE_CURVATURE_LABEL,
             title="(b) positive curvature against $d$")
    for ax in (ax_a, ax_b):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


def _bands(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """d -> the bands of the eigenvalue excess over 1/2 and of Tr H_d/‖H_d‖_F against the
    radius factor, the noise level of the excess, and the radius factors."""
    eigen = claims.plane_curves(rows, "positive_eigenvalues")
    ratio = claims.plane_curves(rows, "trace_over_frobenius")
    return {d: {"x": x, "eigen": claims.find_band(x, claims.eigenvalue_excess(y)),
                "noise": claims.fraction_noise(d, seeds),
                "ratio": claims.find_band(*ratio[d][:2])} for d, (x, y, seeds) in eigen.items()}


def _summaries(bands: dict[int, dict[str, Any]], key: str) -> dict[str, Any]:
    return {str(d): b[key].summary() if b[key] else None for d, b in bands.items()}


def check_eigenvalue_excess(rows: list[dict[str, Any]]) -> Finding:
    """Obs. 1, Fig. 3(a): at every d the fraction of positive eigenvalues exceeds 1/2 (above the
    binomial noise) in a band of radii closed on both sides, and the peak excess decreases with
    d (``TREND_PAIRS`` of the pairs of d's)."""
    expected = (f"at every d: excess over 1/2 peaks inside the radius grid above "
                f"{claims.NOISE_Z} binomial sd, its band (>= {claims.BAND_FRACTION} x peak) closes "
                f"before both grid ends; the peak excess falls with d in >= {claims.TREND_PAIRS} "
                f"of the pairs of d's")
    bands = _bands(rows)
    if not bands:
        return Finding(INCONCLUSIVE, {"dims": []}, expected)
    verdicts = [claims.band_verdict(b["eigen"], noise=b["noise"]) for b in bands.values()]
    peaks = [b["eigen"].peak if b["eigen"] else None for b in bands.values()]
    falling = claims.decreasing_pairs(peaks) if claims.finite(*peaks) else float("nan")
    if len(bands) < 2 or not claims.finite(falling):
        verdicts.append(INCONCLUSIVE)
    else:
        verdicts.append(REPRODUCED if falling >= claims.TREND_PAIRS else NOT_REPRODUCED)
    return Finding(claims.worst(verdicts), {
        "dims": list(bands), "peak_excess": peaks, "decreasing_pairs": falling,
        "noise": [b["noise"] for b in bands.values()], "excess": _summaries(bands, "eigen")},
        expected)


def check_trace_ratio_excess(rows: list[dict[str, Any]]) -> Finding:
    """Obs. 2, Fig. 3(b): at every d Tr H_d/‖H_d‖_F peaks above 1 in a band of radii closed on
    both sides, the peak lies in the band of positive eigenvalues, and the peak does not decrease
    with d (at most ``NO_TREND_PAIRS`` of the pairs of d's go down)."""
    expected = (f"at every d: Tr H/||H|| peaks above {claims.TRACE_RATIO_MIN} inside the radius "
                f"grid, its band (>= {claims.BAND_FRACTION} x peak) closes before both grid ends, the "
                f"peak lies in the band of positive eigenvalues; the peak falls with d in <= "
                f"{claims.NO_TREND_PAIRS} of the pairs of d's")
    bands = _bands(rows)
    if not bands:
        return Finding(INCONCLUSIVE, {"dims": []}, expected)
    verdicts = []
    for b in bands.values():
        verdicts.append(claims.band_verdict(b["ratio"], minimum=claims.TRACE_RATIO_MIN))
        if b["ratio"] is None or b["eigen"] is None:
            verdicts.append(INCONCLUSIVE)
        elif not b["eigen"].contains(b["ratio"].x[b["ratio"].peak_index]):
            verdicts.append(NOT_REPRODUCED)
    peaks = [b["ratio"].peak if b["ratio"] else None for b in bands.values()]
    falling = claims.decreasing_pairs(peaks) if claims.finite(*peaks) else float("nan")
    if len(bands) < 2 or not claims.finite(falling):
        verdicts.append(INCONCLUSIVE)
    elif falling > claims.NO_TREND_PAIRS:
        verdicts.append(NOT_REPRODUCED)
    return Finding(claims.worst(verdicts), {
        "dims": list(bands), "peak_trace_ratio": peaks, "decreasing_pairs": falling,
        "trace_ratio": _summaries(bands, "ratio"),
        "eigenvalue_band": {str(d): b["eigen"].summary()["band"] if b["eigen"] else None
                            for d, b in bands.items()}}, expected)


def check_xavier_in_zone(rows: list[dict[str, Any]]) -> Finding:
    """Conclusion 7: the Xavier radius (radius factor 1) lies in the band of both measures —
    the eigenvalue excess and Tr H_d/‖H_d‖_F — at every d."""
    expected = (f"radius factor 1 (Xavier) inside the band (>= {claims.BAND_FRACTION} x peak) of "
                f"the eigenvalue excess and of Tr H/||H|| at every d")
    bands = _bands(rows)
    if not bands:
        return Finding(INCONCLUSIVE, {"dims": []}, expected)
    verdicts = [v for b in bands.values() for v in (
        claims.inside_band_verdict(b["eigen"], 1.0, noise=b["noise"]),
        claims.inside_band_verdict(b["ratio"], 1.0, minimum=claims.TRACE_RATIO_MIN))]
    radii = [r["radius"] / r["radius_factor"] for r in rows
             if claims.finite(r.get("radius"), r.get("radius_factor"))]
    return Finding(claims.worst(verdicts), {
        "xavier_radius": float(np.mean(radii)) if radii else None, "dims": list(bands),
        "eigenvalue_band": {str(d): b["eigen"].summary()["band"] if b["eigen"] else None
                            for d, b in bands.items()},
        "trace_ratio_band": {str(d): b["ratio"].summary()["band"] if b["ratio"] else None
                             for d, b in bands.items()},
        "peaks_at": {str(d): [b[k].summary()["peak_at"] if b[k] else None
                              for k in ("eigen", "ratio")] for d, b in bands.items()}}, expected)


STUDY = Study(
    name="fort/radius", paper=FORT, reproduces="Fig. 3",
    title="positive eigenvalues and Tr H/||H|| on random hyperplanes against radius and d",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"plane": ("radius_factor", "seed")}, growable=("seeds",), legacy={"match": {"study": "fort"}},
    claims=(
        Claim("eigenvalue-excess", "Obs. 1; Fig. 3(a); Sec. 2.4",
              "On random d-hyperplanes the fraction of positive Hessian eigenvalues exceeds 1/2 "
              "in a band of radii (the Goldilocks zone), the more so the smaller d.",
              check_eigenvalue_excess),
        Claim("trace-ratio-excess", "Obs. 2; Fig. 3(b)",
              "Tr H/||H|| has an excess (peak above 1) in the same band of radii, and unlike the "
              "eigenvalue excess it does not decrease with d.", check_trace_ratio_excess),
        Claim("xavier-in-zone", "Concl. 7; Fig. 1",
              "The Xavier initialization radius lies well within the Goldilocks zone.",
              check_xavier_in_zone),
    ),
    doc=__doc__)
