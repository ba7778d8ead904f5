"""Fort & Scherlis Sec. 2.4: random directions against eigenvalues — why a slim majority of
positive eigenvalues comes with an overwhelming majority of positive directions.

Per (radius, seed) a ``directions`` record: the measured curvatures vᵀ(MHM)v along
``num_directions`` random unit v (fraction > 0, mean, variance), the full-space Hutchinson Tr and
‖·‖_F² of MHM (same probes for every radius of a seed), and what :mod:`gzone.directions`
predicts from them exactly (E vᵀHv = Tr H/D, Var = 2/(D+2)·Var λ, P(vᵀHv > 0) ≈ Φ(mean/sd));
plus ``plane`` records on Haar-orthonormal planes (for which the plane moments are exact) with
the predicted ρ_d beside the measured Tr H_d/‖H_d‖_F.

    gzone run fort/directions
    gzone run fort/directions --num-directions 500
    gzone run fort/directions --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from gzone import directions
from gzone.engine import FORT, Claim, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import check_at_least, check_dims, field
from gzone.engine.setup import check_dim, stream_key
from gzone.studies.fort import _claims as claims
from gzone.studies.fort import _common as common

#: "the curvature along the vast majority of randomly chosen directions is positive" (Sec. 2.4)
VAST_MAJORITY = 0.9
#: "far outnumber": the excess of positive directions over 1/2 is at least this many times the
#: excess of positive eigenvalues (a stated tolerance; the paper gives no number)
FAR_FACTOR = 2.0


@dataclasses.dataclass(frozen=True)
class Config(common.RadiiConfig):
    """Random directions and orthonormal d-planes against the exact relations of Sec. 2.4."""

    dims: tuple[int, ...] = field((5, 10, 20, 50, 100), "orthonormal plane dimensions d")
    num_directions: int = field(200, "random unit directions v per point (v^T H v each)")
    probes: int = field(50, "Hutchinson probes for the full-space Tr H and ||H||_F^2 per point")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {**common.TINY, "dims": (5, 10), "num_directions": 40, "probes": 10},
    "default": {},
    "cpu": {**common.MNIST_CPU, "dims": (5, 10, 20, 50), "num_directions": 100, "probes": 20},
    "paper": {**common.MNIST, "dims": (10, 20, 50, 100, 200)},
    "mnist": {**common.MNIST, "dims": (10, 20, 50, 100, 200)},
    "cifar10": {**common.CIFAR10, "dims": (10, 20, 50, 100, 200)},
}


def validate(config: Config) -> None:
    common.validate_radii(config)
    check_dims(config, "dims")
    check_at_least(config, "num_directions")
    check_at_least(config, "probes", minimum=2)


def prepare(config: Config, data_dir: str | None) -> Any:
    setup = common.setup_for(config, data_dir)
    check_dim(setup, max(config.dims), name="dims")
    return setup


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    return common.plane_points(config, "directions")


def direction_record(config: Config, setup: Any, c: float, seed: int, params: Any, m: Any,
                     batches: Any, common_fields: dict[str, Any],
                     planes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``directions`` record of one (radius, seed) and the predicted ρ_d written into that
    point's ``plane`` records."""
    point = common.scaled(params, c)
    apply_fn = setup.model.apply
    moments = common.hutchinson_moments(apply_fn, point, batches, m, stream_key(seed, "hutchinson"),
                                        config.probes)
    matvec = common.metric_hessian_matvec(apply_fn)
    temperature = jnp.asarray(1.0, m.dtype)
    vs = directions.unit_directions(stream_key(seed, "directions"), config.num_directions,
                                    setup.num_params, m.dtype)
    kappa = directions.direction_curvatures(lambda v: matvec(v, point, batches, temperature, m), vs)
    predicted = directions.direction_moments(moments["trace"], moments["frobenius_sq"], setup.num_params)
    ratio = moments["trace"] / math.sqrt(moments["frobenius_sq"]) if moments["frobenius_sq"] > 0 else None
    for plane in planes:
        if ratio is not None:
            plane["predicted_positive_curvature"] = directions.plane_ratio(
                moments["trace"], moments["frobenius_sq"], setup.num_params, plane["dim"])
            plane["predicted_positive_curvature_limit"] = directions.plane_ratio_limit(ratio, plane["dim"])
    flags = [] if np.all(np.isfinite(kappa)) else ["nonfinite_curvature"]
    kappa = kappa[np.isfinite(kappa)]
    return [{"kind": "directions", **common_fields, "num_directions": config.num_directions,
             **moments, "full_positive_curvature": ratio,
             "positive_directions": float(np.mean(kappa > 0)) if kappa.size else None,
             "direction_mean": float(kappa.mean()) if kappa.size else None,
             "direction_variance": float(kappa.var(ddof=1)) if kappa.size > 1 else None,
             "predicted_direction_mean": predicted.mean,
             "predicted_direction_variance": predicted.variance,
             "predicted_positive_directions": directions.positive_direction_fraction(predicted),
             "principal_variance": directions.principal_variance(
                 moments["trace"], moments["frobenius_sq"], setup.num_params),
             "flags": flags}]


def measure(ctx, chunk):
    config, setup = ctx.config, ctx.setup

    def on_point(c, seed, params, m, batches, common_fields, planes):
        return direction_record(config, setup, c, seed, params, m, batches, common_fields, planes)

    return common.measure_planes(ctx, chunk, setup, config, tuple(config.dims),
                                 basis="orthonormal", on_point=on_point)


def _combined(values: list[float | None]) -> float | None:
    """The standard error of a mean over seeds from the seeds' standard errors."""
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None
    return math.sqrt(sum(v * v for v in values)) / len(values)


def _z(group: list[dict[str, Any]], measured: str, predicted: str,
       errors: Any) -> float | None:
    """(measured − predicted), mean over seeds, in standard errors; ``errors(record)`` gives the
    (measured, predicted) standard errors of one seed (None where a value is missing)."""
    try:
        diffs = [g[measured] - g[predicted] for g in group]
        se = _combined([math.hypot(*errors(g)) for g in group])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return None if not se else float(np.mean(diffs)) / se


def _mean_errors(g: dict[str, Any]) -> tuple[float, float]:
    """The standard errors of E vᵀHv measured over ``num_directions`` directions and predicted
    as the Hutchinson Tr H / D."""
    return (math.sqrt(g["direction_variance"] / g["num_directions"]),
            g["trace_stderr"] / g["num_params"])


def _variance_errors(g: dict[str, Any]) -> tuple[float, float]:
    """The standard errors of Var vᵀHv: measured (sample variance of n near-Gaussian values:
    var·√(2/(n−1))) and predicted 2/(D+2)·(‖H‖_F²/D − …) (from the Hutchinson ‖H‖_F² error)."""
    size = g["num_params"]
    return (g["direction_variance"] * math.sqrt(2 / (g["num_directions"] - 1)),
            2 / (size + 2) * g["frobenius_sq_stderr"] / size)


def _ratio_error(g: dict[str, Any]) -> float:
    """The standard error of the full-space Tr H/‖H‖_F = s1/√s2 (delta method; the covariance of
    the shared probes ignored, which overstates it)."""
    return abs(g["full_positive_curvature"]) * math.hypot(
        g["trace_stderr"] / g["trace"], g["frobenius_sq_stderr"] / (2 * g["frobenius_sq"]))


def moment_fields(group: list[dict[str, Any]]) -> dict[str, Any]:
    """Of the ``directions`` records of one radius: the measured-minus-predicted mean and variance
    of vᵀHv in standard errors (``mean_z``, ``variance_z``), the full-space Tr H/‖H‖_F (mean
    over seeds, with its standard error: the larger of the Hutchinson one and the seeds' spread)
    and D."""
    try:
        ratio_se = _combined([_ratio_error(g) for g in group])
    except (KeyError, TypeError, ZeroDivisionError):
        ratio_se = None
    ratios = [g.get("full_positive_curvature") for g in group]
    if ratio_se is not None and len(ratios) > 1 and None not in ratios:  # θ0 varies too
        ratio_se = max(ratio_se, float(np.std(ratios, ddof=1) / math.sqrt(len(ratios))))
    return {"mean_z": _z(group, "direction_mean", "predicted_direction_mean", _mean_errors),
            "variance_z": _z(group, "direction_variance", "predicted_direction_variance",
                             _variance_errors),
            "full_positive_curvature": common.mean_of(group, "full_positive_curvature"),
            "full_positive_curvature_stderr": ratio_se,
            "num_params": group[0].get("num_params")}


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per radius (means over seeds): the measured and predicted fraction, mean and variance of
    the random-direction curvatures, their differences in standard errors and the full-space
    Tr H/‖H‖_F (:func:`moment_fields`); then the plane rows (with the predicted ρ_d)."""
    rows = []
    groups: dict[float, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("kind") == "directions":
            groups.setdefault(r["radius_factor"], []).append(r)
    for c, g in sorted(groups.items()):
        rows.append({"radius_factor": c, "radius": common.mean_of(g, "radius"),
                     **{name: common.mean_of(g, name) for name in (
                         "positive_directions", "predicted_positive_directions", "direction_mean",
                         "predicted_direction_mean", "direction_variance",
                         "predicted_direction_variance")}, **moment_fields(g)})
    return rows + common.plane_rows(records)


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """(left) the fraction of random directions with positive curvature (measured and predicted
    from Hutchinson moments) beside the fraction of positive eigenvalues per d, against radius;
    (right) measured Tr H_d/‖H_d‖_F against the exact prediction, y = x."""
    import matplotlib.pyplot as plt

    from gzone.plots import PLANE_POSITIVE_CURVATURE_LABEL, finish

    pts = [r for r in records if r.get("kind") == "directions"]
    planes = [r for r in records if r.get("kind") == "plane"]
    fig, (ax_l, ax_r) = plt.subplots(1, 2, figsize=(10, 3.8))
    if not pts:
        common.empty(ax_l, "directions")
    common.band(ax_l, pts, "radius", "positive_directions", lambda r: True, "black",
                "random directions (measured)")
    common.band(ax_l, pts, "radius", "predicted_positive_directions", lambda r: True, "0.5",
                "random directions (predicted)", ls="--")
    dims = sorted({r["dim"] for r in planes})
    colors = common.colors(dims, "plasma")
    for d in dims:
        common.band(ax_l, planes, "radius", "local_convexity", lambda r, d=d: r["dim"] == d,
                    colors[d], f"eigenvalues, $d$ = {d}")
    common.xavier(ax_l, pts)
    ax_l.set(xscale="log", xlabel=common.RADIUS_LABEL, ylabel="fraction positive",
             title="random directions vs eigenvalues")
    for d in dims:
        pairs = [(r["predicted_positive_curvature"], r["positive_curvature"]) for r in planes
                 if r["dim"] == d and r.get("predicted_positive_curvature") is not None
                 and r.get("positive_curvature") is not None]
        if pairs:
            p, m = np.array(pairs).T
            ax_r.plot(p, m, "o", ms=3, color=colors[d], label=f"$d$ = {d}")
    lims = ax_r.get_xlim()
    ax_r.plot(lims, lims, color="0.5", lw=0.8)
    ax_r.set(xlabel=r"predicted $\mathbb{E}\,\mathrm{Tr}(H_d)/\sqrt{\mathbb{E}\|H_d\|_F^2}$",
             ylabel=f"measured {PLANE_POSITIVE_CURVATURE_LABEL}", title="random $d$-planes")
    for ax in (ax_l, ax_r):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


def _direction_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((r for r in rows if "positive_directions" in r), key=lambda r: r["radius_factor"])


def zone_radii(rows: list[dict[str, Any]]) -> tuple[list[float] | None, str, dict[str, Any]]:
    """The radius factors of the zone — the band of the excess of positive eigenvalues over 1/2
    on the planes of the largest d — with the verdict that the zone was located (reproduced: a
    peak above the noise inside the grid) and its numbers."""
    curves = claims.plane_curves(rows, "positive_eigenvalues")
    if not curves:
        return None, INCONCLUSIVE, {}
    dim = max(curves)
    x, y, seeds = curves[dim]
    band = claims.find_band(x, claims.eigenvalue_excess(y))
    if band is None:
        return None, INCONCLUSIVE, {"dim": dim}
    found = {"dim": dim, **band.summary()}
    if band.peak <= 0:
        return None, NOT_REPRODUCED, found
    if band.peak <= claims.fraction_noise(dim, seeds) or not band.interior:
        return None, INCONCLUSIVE, found
    return list(x[band.first:band.last + 1]), REPRODUCED, found


def check_directions_outnumber(rows: list[dict[str, Any]]) -> Finding:
    """Sec. 2.4: in the zone (:func:`zone_radii`) the vast majority of random directions has
    positive curvature while only a slim majority of eigenvalues (largest d) is positive: at every
    zone radius the fraction of positive directions is at least ``VAST_MAJORITY`` and its excess
    over 1/2 at least ``FAR_FACTOR`` times the eigenvalues'."""
    expected = (f"at every radius of the zone (band of positive eigenvalues at the largest d): "
                f"positive directions >= {VAST_MAJORITY}, their excess over 1/2 >= {FAR_FACTOR} x "
                f"the eigenvalues'")
    zone, verdict, found = zone_radii(rows)
    if zone is None:
        return Finding(verdict, {"zone": found}, expected)
    eig = dict(zip(*claims.plane_curves(rows, "positive_eigenvalues")[found["dim"]][:2]))
    pairs = [(r["radius_factor"], r.get("positive_directions"), eig.get(r["radius_factor"]))
             for r in _direction_rows(rows) if r["radius_factor"] in zone]
    measured = {"zone": found, "radius_factors": [c for c, _, _ in pairs],
                "positive_directions": [p for _, p, _ in pairs],
                "positive_eigenvalues": [e for _, _, e in pairs]}
    if not pairs or not all(claims.finite(p, e) for _, p, e in pairs):
        return Finding(INCONCLUSIVE, measured, expected)
    holds = all(p >= VAST_MAJORITY and p - 0.5 >= FAR_FACTOR * (e - 0.5) for _, p, e in pairs)
    return Finding(REPRODUCED if holds else NOT_REPRODUCED, measured, expected)


def check_direction_moments(rows: list[dict[str, Any]]) -> Finding:
    """Sec. 2.4 made exact (:mod:`gzone.directions`): at every radius the measured mean and
    variance of vᵀHv over random unit v agree with Tr H/D and 2/(D+2)·Var λ from the Hutchinson
    moments within ``AGREE_Z`` standard errors."""
    expected = (f"|measured - predicted| <= {claims.AGREE_Z} standard errors for the mean and the "
                f"variance of v^T H v at every radius")
    found = _direction_rows(rows)
    z = [(r.get("mean_z"), r.get("variance_z")) for r in found]
    gaussian = [abs(r["positive_directions"] - r["predicted_positive_directions"]) for r in found
                if claims.finite(r.get("positive_directions"),
                                 r.get("predicted_positive_directions"))]
    measured = {"radius_factors": [r["radius_factor"] for r in found],
                "mean_z": [m for m, _ in z], "variance_z": [v for _, v in z],
                "max_gaussian_fraction_error": max(gaussian) if gaussian else None}
    if not z or not all(claims.finite(m, v) for m, v in z):
        return Finding(INCONCLUSIVE, measured, expected)
    holds = max(max(abs(m), abs(v)) for m, v in z) <= claims.AGREE_Z
    return Finding(REPRODUCED if holds else NOT_REPRODUCED, measured, expected)


def check_trace_ratio_bounds(rows: list[dict[str, Any]]) -> Finding:
    """Sec. 2.4: in the zone the full-space Tr H/‖H‖_F is greater than 1 (most random directions
    positive) but less than √D (not nearly all eigenvalues positive), at every zone radius; a
    ±``CI_Z`` standard-error interval straddling 1 is inconclusive."""
    expected = (f"at every radius of the zone: 1 < Tr H/||H||_F (full space, +-{claims.CI_Z} "
                f"stderr) < sqrt(D)")
    zone, verdict, found = zone_radii(rows)
    if zone is None:
        return Finding(verdict, {"zone": found}, expected)
    picked = [r for r in _direction_rows(rows) if r["radius_factor"] in zone]
    ratios = [r.get("full_positive_curvature") for r in picked]
    errors = [r.get("full_positive_curvature_stderr") for r in picked]
    size = picked[0].get("num_params") if picked else None
    measured = {"zone": found, "radius_factors": [r["radius_factor"] for r in picked],
                "trace_ratio": ratios, "stderr": errors,
                "sqrt_D": math.sqrt(size) if size else None}
    if not picked or not claims.finite(*ratios, *errors) or not size:
        return Finding(INCONCLUSIVE, measured, expected)
    measured["max_ratio_over_sqrt_D"] = max(ratios) / math.sqrt(size)
    verdicts = [REPRODUCED if r - claims.CI_Z * e > 1 else
                NOT_REPRODUCED if r + claims.CI_Z * e < 1 else INCONCLUSIVE
                for r, e in zip(ratios, errors)]
    verdicts += [REPRODUCED if r < math.sqrt(size) else NOT_REPRODUCED for r in ratios]
    return Finding(claims.worst(verdicts), measured, expected)


STUDY = Study(
    name="fort/directions", paper=FORT, reproduces="Sec. 2.4",
    title="random directions vs eigenvalues: measured against the exact moments",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"directions": ("radius_factor", "seed")}, growable=("seeds",), kinds=("plane", "directions"), legacy={"match": {"study": "fort"}},
    claims=(
        Claim("directions-outnumber-eigenvalues", "Sec. 2.4",
              "In the Goldilocks zone the curvature along the vast majority of random directions "
              "is positive, while only a slim majority of the Hessian eigenvalues is.",
              check_directions_outnumber),
        Claim("direction-moments", "Sec. 2.4",
              "The curvature v^T H v along a random direction has mean Tr H/D and a variance "
              "about D/2 times smaller than that of the eigenvalues (exactly 2/(D+2) Var lambda).",
              check_direction_moments, scales=("tiny", "default", "cpu", "paper")),
        Claim("trace-ratio-bounds", "Sec. 2.4",
              "In the Goldilocks zone Tr H/||H|| is greater than 1 but less than sqrt(D).",
              check_trace_ratio_bounds),
    ),
    doc=__doc__)
