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
from gzone.engine import FORT, Study
from gzone.engine.config import check_at_least, check_dims, field
from gzone.engine.setup import check_dim, stream_key
from gzone.studies.fort import _common as common


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


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per radius (means over seeds): the measured and predicted fraction, mean and variance of
    the random-direction curvatures; then the plane rows (with the predicted ρ_d)."""
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
                         "predicted_direction_variance")}})
    return rows + common.plane_rows(records)


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """(left) the fraction of random directions with positive curvature (measured and predicted
    from Hutchinson moments) beside the fraction of positive eigenvalues per d, against radius;
    (right) measured Tr H_d/‖H_d‖_F against the exact prediction, y = x."""
    import matplotlib.pyplot as plt

    from gzone.plots import finish

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
                    colors[d], f"eigenvalues, d={d}")
    common.xavier(ax_l, pts)
    ax_l.set(xscale="log", xlabel=common.RADIUS_LABEL, ylabel="fraction positive",
             title="positive curvature: directions vs eigenvalues")
    for d in dims:
        pairs = [(r["predicted_positive_curvature"], r["positive_curvature"]) for r in planes
                 if r["dim"] == d and r.get("predicted_positive_curvature") is not None
                 and r.get("positive_curvature") is not None]
        if pairs:
            p, m = np.array(pairs).T
            ax_r.plot(p, m, "o", ms=3, color=colors[d], label=f"d={d}")
    lims = ax_r.get_xlim()
    ax_r.plot(lims, lims, color="0.5", lw=0.8)
    ax_r.set(xlabel=r"predicted $E\,$Tr$H_d/\sqrt{E\|H_d\|_F^2}$",
             ylabel=r"measured Tr$H_d/\|H_d\|_F$", title="random d-planes")
    for ax in (ax_l, ax_r):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


STUDY = Study(
    name="fort/directions", paper=FORT, reproduces="Sec. 2.4",
    title="random directions vs eigenvalues: measured against the exact moments",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"directions": ("radius_factor", "seed")}, growable=("seeds",), kinds=("plane", "directions"), legacy={"match": {"study": "fort"}},
    doc=__doc__)
