"""Fort & Scherlis Fig. 5: the mean loss against the radius — flat at log K up to a critical
radius, then a power law with exponent ≈ L (the number of weight layers, Sec. 2.5) — with the
Laplacian Tr H and ‖H‖ growing through the zone (Sec. 2.6: Tr H ∝ r^(L−2) at large r).

Per (radius, seed) a ``loss`` record — the loss and accuracy at c·θ0 and the full-space
Hutchinson Tr(MHM), ‖MHM‖_F (the Hessian in the coordinates of the per-layer metric M, the ones
the hyperplanes use) — and a ``plane`` record at d = ``dim``. The summary holds the mean loss per
radius, the critical radius and the fitted power-law exponent against L.

    gzone run fort/loss-radius
    gzone run fort/loss-radius --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from gzone import curvature, radial, subspace, training
from gzone.engine import FORT, Claim, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED
from gzone.engine.config import check_at_least, check_choice, field
from gzone.engine.setup import check_dim, stream_key
from gzone.engine.summary import as_rows
from gzone.studies.fort import _claims as claims
from gzone.studies.fort import _common as common

#: a fitted exponent agrees with the paper's within this (absolute; 10 % of the paper's L = 3):
#: the fits start at the crossover from the flat part, which biases them low
EXPONENT_TOL = 0.3
#: radii below the critical radius needed to see the flat part
FLAT_POINTS = 2


@dataclasses.dataclass(frozen=True)
class Config(common.RadiiConfig):
    """The loss, Tr H and ‖H‖ at random points of each radius."""

    dim: int = field(50, "hyperplane dimension d of the plane records")
    basis: str = field("sparse", "random basis (the paper: sparse)", subspace.BASIS_KINDS)
    probes: int = field(50, "Hutchinson probes for the full-space Tr H and ||H||_F^2 per point")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {**common.TINY, "dim": 10, "probes": 10},
    "default": {},
    "cpu": {**common.MNIST_CPU, "probes": 20},
    "paper": {**common.MNIST},
    "mnist": {**common.MNIST},
    "cifar10": {**common.CIFAR10},
}


def validate(config: Config) -> None:
    common.validate_radii(config)
    check_choice(config, "basis", subspace.BASIS_KINDS)
    check_at_least(config, "dim")
    check_at_least(config, "probes", minimum=2)


def prepare(config: Config, data_dir: str | None) -> Any:
    setup = common.setup_for(config, data_dir)
    check_dim(setup, config.dim)
    return setup


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    return common.plane_points(config, "loss")


def measure(ctx, chunk):
    config, setup = ctx.config, ctx.setup
    layers = ctx.cached("layers", lambda: common.weight_layers(setup))

    def on_point(c, seed, params, m, batches, common_fields, planes):
        point = common.scaled(params, c)
        moments = common.hutchinson_moments(setup.model.apply, point, batches, m,
                                            stream_key(seed, "hutchinson"), config.probes)
        loss, _ = curvature.loss_and_gradient(setup.model.apply, point, batches)
        accuracy = float(training.accuracy(setup.model.apply, point, batches))
        return [{"kind": "loss", **common_fields, "weight_layers": layers, "loss": float(loss),
                 "accuracy": accuracy, "log_classes": math.log(setup.num_classes), **moments,
                 "frobenius_norm": math.sqrt(max(moments["frobenius_sq"], 0.0)),
                 "flags": [] if math.isfinite(float(loss)) else ["nonfinite_loss"]}]

    return common.measure_planes(ctx, chunk, setup, config, (config.dim,), on_point=on_point)


def loss_radius_summary(records: list[dict[str, Any]], *, fit_above: float = 3.0) -> dict[str, Any]:
    """Mean loss, Tr and ‖·‖_F per radius (over seeds), the critical radius (mean loss first 10 %
    above log K) and the power law fitted where the mean loss exceeds ``fit_above`` × log K."""
    groups: dict[float, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("kind") == "loss":
            groups.setdefault(r["radius_factor"], []).append(r)
    groups = dict(sorted(groups.items()))
    if not groups:
        return {"rows": [], "fit": None}
    rows = [{"radius_factor": c, "radius": float(np.mean([g["radius"] for g in group])),
             "loss": float(np.mean([g["loss"] for g in group])),
             "trace": float(np.mean([g["trace"] for g in group])),
             "frobenius_norm": float(np.mean([g["frobenius_norm"] for g in group])),
             "seeds": len(group)} for c, group in groups.items()]
    first = next(iter(groups.values()))
    flat = first[0]["log_classes"]
    radii = np.array([r["radius"] for r in rows])
    losses = np.array([r["loss"] for r in rows])
    out = {"rows": rows, "weight_layers": first[0]["weight_layers"], "log_classes": flat,
           "xavier_radius": float(np.mean([g["xavier_radius"] for g in first])),
           "critical_radius": radial.critical_radius(radii, losses, flat), "fit": None}
    above = radii[losses > fit_above * flat]
    if above.size >= 3:
        out["fit"] = radial.power_law_exponent(radii, losses, r_min=float(above[0]))._asdict()
    return out


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per radius: the mean loss, Tr H and ‖H‖_F; then the Xavier and critical radii, log K, L
    and the fitted exponent."""
    s = loss_radius_summary(records)
    if not s["rows"]:
        return []
    fit = s["fit"] or {}
    return s["rows"] + as_rows({
        "xavier_radius": s["xavier_radius"], "critical_radius": s["critical_radius"],
        "log_classes": s["log_classes"],
        "weight_layers": s["weight_layers"], "fitted_exponent": fit.get("exponent"),
        "exponent_stderr": fit.get("stderr"), "fit_from_radius": fit.get("r_min")})


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """(a) the mean loss at random points of radius r (log-log) with log K and the fitted power
    law; (b) Tr(MHM) and ‖MHM‖_F (full space, Hutchinson; M the per-layer metric) against
    radius."""
    import matplotlib.pyplot as plt

    from gzone.plots import finish

    summary = loss_radius_summary(records)
    rows = summary["rows"]
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 3.8))
    if not rows:
        common.empty(ax_a, "loss")
        common.empty(ax_b, "loss")
    else:
        r = np.array([row["radius"] for row in rows])
        ax_a.plot(r, [row["loss"] for row in rows], "o-", ms=3, color="black", label="mean loss")
        ax_a.axhline(summary["log_classes"], color="0.6", lw=0.8, label=r"$\log K$")
        fit = summary["fit"]
        if fit is not None:
            rr = r[r >= fit["r_min"]]
            ax_a.plot(rr, fit["prefactor"] * rr ** fit["exponent"], "--", color="tab:red",
                      label=f"fit: exponent {fit['exponent']:.2f}"
                            f" ($L$ = {summary['weight_layers']})")
        ax_b.plot(r, [row["trace"] for row in rows], "o-", ms=3, label=r"$\mathrm{Tr}(MHM)$")
        ax_b.plot(r, [row["frobenius_norm"] for row in rows], "s-", ms=3, label=r"$\|MHM\|_F$")
        for ax in (ax_a, ax_b):
            ax.axvline(summary["xavier_radius"], color="0.4", ls=":", lw=1, label="Xavier radius")
    ax_a.set(xscale="log", yscale="log", xlabel=common.RADIUS_LABEL,
             ylabel=r"mean loss $\langle\ell\rangle$",
             title="(a) mean loss at radius $r$")
    ax_b.set(xscale="log", yscale="symlog", xlabel=common.RADIUS_LABEL,
             ylabel=r"full-space $MHM$ ($M$: per-layer metric)",
             title=r"(b) $\mathrm{Tr}(MHM)$ and $\|MHM\|_F$")
    for ax in (ax_a, ax_b):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


def _radius_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((r for r in rows if "radius_factor" in r), key=lambda r: r["radius"])


def check_loss_power_law(rows: list[dict[str, Any]]) -> Finding:
    """Fig. 5(a), Sec. 2.5: the mean loss is flat (within 10 % of log K) below a critical radius
    seen inside the grid (``FLAT_POINTS`` radii below it) and a power law above it whose fitted
    exponent is L within ``EXPONENT_TOL`` (:func:`claims.tolerance_verdict`)."""
    expected = (f"mean loss within 10 % of log K at >= {FLAT_POINTS} radii below the critical "
                f"radius; above it a power law with exponent L +- {EXPONENT_TOL} "
                f"(+-{claims.CI_Z} stderr)")
    q = claims.quantities(rows)
    radii = [r["radius"] for r in _radius_rows(rows)]
    critical, layers = q.get("critical_radius"), q.get("weight_layers")
    measured = {"critical_radius": critical, "xavier_radius": q.get("xavier_radius"),
                "weight_layers": layers, "fitted_exponent": q.get("fitted_exponent"),
                "exponent_stderr": q.get("exponent_stderr"),
                "fit_from_radius": q.get("fit_from_radius"),
                "flat_radii": sum(r < critical for r in radii) if claims.finite(critical) else None}
    if not radii or layers is None:
        return Finding(INCONCLUSIVE, measured, expected)
    if not claims.finite(critical):  # the loss never rises on the grid
        return Finding(NOT_REPRODUCED, measured, expected)
    verdicts = [claims.tolerance_verdict(q.get("fitted_exponent"), q.get("exponent_stderr"),
                                         layers, EXPONENT_TOL)]
    if measured["flat_radii"] < FLAT_POINTS:
        verdicts.append(INCONCLUSIVE)
    return Finding(claims.worst(verdicts), measured, expected)


def check_laplacian_growth(rows: list[dict[str, Any]]) -> Finding:
    """Fig. 5(b), Sec. 2.6: where the loss follows its power law r^L (the radii of the loss fit),
    Tr H grows as r^(L−2) — linearly for two hidden layers — as Stokes (Eq. 4) implies: the
    fitted log-log slope of Tr H is L − 2 within ``EXPONENT_TOL``."""
    expected = f"log-log slope of Tr H on the loss's power-law radii = L - 2 +- {EXPONENT_TOL}"
    q = claims.quantities(rows)
    layers, start = q.get("weight_layers"), q.get("fit_from_radius")
    measured: dict[str, Any] = {"weight_layers": layers, "fit_from_radius": start,
                                "predicted_slope": None if layers is None else layers - 2}
    picked = _radius_rows(rows)
    if layers is None or not claims.finite(start) or not all(
            claims.finite(r.get("trace")) for r in picked):
        return Finding(INCONCLUSIVE, measured, expected)
    try:
        fit = radial.power_law_exponent([r["radius"] for r in picked],
                                        [r["trace"] for r in picked], r_min=start)
    except ValueError:  # fewer than 3 radii with a positive trace
        return Finding(INCONCLUSIVE, measured, expected)
    measured.update(slope=fit.exponent, slope_stderr=fit.stderr, points=fit.num_points)
    return Finding(claims.tolerance_verdict(fit.exponent, fit.stderr, layers - 2, EXPONENT_TOL),
                   measured, expected)


STUDY = Study(
    name="fort/loss-radius", paper=FORT, reproduces="Fig. 5",
    title="mean loss, Tr H and ||H|| against the radius: flat, then a power law in L",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"loss": ("radius_factor", "seed")}, growable=("seeds",), kinds=("plane", "loss"), legacy={"match": {"study": "fort"}},
    claims=(
        Claim("loss-power-law", "Fig. 5(a); Sec. 2.5",
              "The mean loss at radius r is constant below a critical radius and grows as a "
              "power law with exponent L, the number of layers, above it.", check_loss_power_law),
        Claim("laplacian-growth", "Fig. 5(b); Sec. 2.6; Eq. (4)",
              "At large r the Laplacian Tr H follows the radial growth of the loss: with "
              "<loss> ~ r^L it grows as r^(L-2) (linearly for two hidden layers).",
              check_laplacian_growth),
    ),
    doc=__doc__)
