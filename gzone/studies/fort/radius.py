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
from gzone.engine import FORT, Study
from gzone.engine.config import check_choice, check_dims, field
from gzone.engine.setup import check_dim
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

    from gzone.plots import finish

    planes = [r for r in records if r.get("kind") == "plane"]
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 3.8))
    dims = sorted({r["dim"] for r in planes})
    colors = common.colors(dims, "plasma")
    for d in dims:
        common.band(ax_a, planes, "radius", "local_convexity", lambda r, d=d: r["dim"] == d,
                    colors[d], f"d={d}")
    if not planes:
        common.empty(ax_a, "plane")
        common.empty(ax_b, "plane")
    ax_a.axhline(0.5, color="0.6", lw=0.8)
    common.xavier(ax_a, planes)
    ax_a.set(xscale="log", xlabel=common.RADIUS_LABEL, ylabel="fraction of positive eigenvalues",
             title="(a) positive eigenvalues on random d-planes")
    factors = sorted({r["radius_factor"] for r in planes})
    shown = factors[:: max(1, len(factors) // 6)]
    fcolors = common.colors(shown)
    for c in shown:
        group = [r for r in planes if r["radius_factor"] == c and r.get("positive_curvature") is not None]
        ds = sorted({r["dim"] for r in group})
        med = [np.median([r["positive_curvature"] for r in group if r["dim"] == d]) for d in ds]
        radius = np.mean([r["radius"] for r in group]) if group else np.nan
        ax_b.plot(ds, med, marker="o", ms=3, color=fcolors[c],
                  label=f"r={radius:.3g}" + (" (Xavier)" if abs(c - 1) < 1e-9 else ""))
    ax_b.set(xscale="log", xlabel="hyperplane dimension d", ylabel=r"Tr$H$ / $\|H\|_F$",
             title="(b) Tr H / ||H|| against d")
    for ax in (ax_a, ax_b):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


STUDY = Study(
    name="fort/radius", paper=FORT, reproduces="Fig. 3",
    title="positive eigenvalues and Tr H/||H|| on random hyperplanes against radius and d",
    config=Config, presets=PRESETS, validate=validate, prepare=prepare, points=points,
    measure=measure, summarize=summarize, figure=figure,
    done={"plane": ("radius_factor", "seed")}, growable=("seeds",), legacy={"match": {"study": "fort"}},
    doc=__doc__)
