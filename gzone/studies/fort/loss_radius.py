"""Fort & Scherlis Fig. 5: the mean loss against the radius — flat at log K up to a critical
radius, then a power law with exponent ≈ L (the number of weight layers, Sec. 2.5) — with Tr H
and ‖H‖ growing through the zone.

Per (radius, seed) a ``loss`` record — the loss and accuracy at c·θ0 and the full-space
Hutchinson Tr(MHM), ‖MHM‖_F — and a ``plane`` record at d = ``dim``. The summary holds the mean
loss per radius, the critical radius and the fitted power-law exponent against L.

    gzone run fort/loss-radius
    gzone run fort/loss-radius --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from gzone import curvature, radial, subspace, training
from gzone.engine import FORT, Study
from gzone.engine.config import check_at_least, check_choice, field
from gzone.engine.setup import check_dim, stream_key
from gzone.engine.summary import as_rows
from gzone.studies.fort import _common as common


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
    """Per radius: the mean loss, Tr H and ‖H‖_F; then the Xavier and critical radii, L and the
    fitted exponent."""
    s = loss_radius_summary(records)
    if not s["rows"]:
        return []
    fit = s["fit"] or {}
    return s["rows"] + as_rows({
        "xavier_radius": s["xavier_radius"], "critical_radius": s["critical_radius"],
        "weight_layers": s["weight_layers"], "fitted_exponent": fit.get("exponent"),
        "exponent_stderr": fit.get("stderr"), "fit_from_radius": fit.get("r_min")})


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """(a) the mean loss at random points of radius r (log-log) with log K and the fitted power
    law; (b) Tr H and ‖H‖_F (full space, Hutchinson) against radius."""
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
        ax_a.axhline(summary["log_classes"], color="0.6", lw=0.8, label="log K")
        fit = summary["fit"]
        if fit is not None:
            rr = r[r >= fit["r_min"]]
            ax_a.plot(rr, fit["prefactor"] * rr ** fit["exponent"], "--", color="tab:red",
                      label=f"fit: exponent {fit['exponent']:.2f} (L = {summary['weight_layers']})")
        ax_b.plot(r, [row["trace"] for row in rows], "o-", ms=3, label="Tr H")
        ax_b.plot(r, [row["frobenius_norm"] for row in rows], "s-", ms=3, label=r"$\|H\|_F$")
        for ax in (ax_a, ax_b):
            ax.axvline(summary["xavier_radius"], color="0.4", ls=":", lw=1, label="Xavier radius")
    ax_a.set(xscale="log", yscale="log", xlabel=common.RADIUS_LABEL, ylabel="loss",
             title="(a) mean loss at radius r")
    ax_b.set(xscale="log", yscale="symlog", xlabel=common.RADIUS_LABEL, title="(b) Tr H and ||H||")
    for ax in (ax_a, ax_b):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


STUDY = Study(
    name="fort/loss-radius", paper=FORT, reproduces="Fig. 5",
    title="mean loss, Tr H and ||H|| against the radius: flat, then a power law in L",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"loss": ("radius_factor", "seed")}, growable=("seeds",), kinds=("plane", "loss"), legacy={"match": {"study": "fort"}},
    doc=__doc__)
