"""Figures of the Fort & Scherlis studies (:mod:`gzone.experiments.fort`), in the paper's layouts.

One function per figure, ``<figure>_figure(records, *, title=None, path_stem=None)``; each marks
the Xavier radius (a dotted vertical line), leaves panels blank when records are missing and
skips nulls (flagged non-finite values). :func:`fort_figure` picks the one of a study.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from gzone.experiments import radial_loss
from gzone.experiments.base import Record
from gzone.plots import finish

RADIUS_LABEL = r"radius $r = \|\theta\|$"


def _colors(keys: list, name: str = "viridis") -> dict:
    cmap = mpl.colormaps[name]
    spots = np.linspace(0.05, 0.85, len(keys)) if len(keys) > 1 else [0.4]
    return {k: cmap(s) for k, s in zip(keys, spots)}


def _empty(ax: plt.Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} records", transform=ax.transAxes, ha="center", va="center")


def _xavier(ax: plt.Axes, records: list[Record], *, factor: bool = False) -> None:
    radii = [r["xavier_radius"] for r in records if r.get("xavier_radius") is not None]
    if radii:
        ax.axvline(1.0 if factor else float(np.mean(radii)), color="0.4", ls=":", lw=1,
                   label="Xavier radius")


def _curve(records: list[Record], x: str, y: str,
           where: Callable[[Record], bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x values (mean over seeds of ``x`` per radius factor), and the median, min and max of ``y``."""
    groups: dict[float, list[Record]] = {}
    for r in records:
        if where(r) and r.get(y) is not None:
            groups.setdefault(r["radius_factor"], []).append(r)
    keys = sorted(groups)
    xs = np.array([np.mean([g[x] for g in groups[k]]) for k in keys])
    vals = [np.array([g[y] for g in groups[k]], float) for k in keys]
    return (xs, np.array([np.median(v) for v in vals]), np.array([v.min() for v in vals]),
            np.array([v.max() for v in vals]))


def _band(ax, records, x, y, where, color, label, **kw) -> None:
    xs, med, low, high = _curve(records, x, y, where)
    if xs.size:
        ax.plot(xs, med, color=color, label=label, marker="o", ms=3, **kw)
        ax.fill_between(xs, low, high, color=color, alpha=0.15, lw=0)


def fig3_figure(records: list[Record], *, title: str | None = None,
                path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 3: (a) fraction of positive eigenvalues of the plane Hessian against radius, one curve
    per d; (b) Tr H_d/‖H_d‖_F against d, one curve per radius."""
    planes = [r for r in records if r.get("kind") == "plane"]
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 3.8))
    dims = sorted({r["dim"] for r in planes})
    colors = _colors(dims, "plasma")
    for d in dims:
        _band(ax_a, planes, "radius", "local_convexity", lambda r, d=d: r["dim"] == d, colors[d], f"d={d}")
    if not planes:
        _empty(ax_a, "plane")
        _empty(ax_b, "plane")
    ax_a.axhline(0.5, color="0.6", lw=0.8)
    _xavier(ax_a, planes)
    ax_a.set(xscale="log", xlabel=RADIUS_LABEL, ylabel="fraction of positive eigenvalues",
             title="(a) positive eigenvalues on random d-planes")
    factors = sorted({r["radius_factor"] for r in planes})
    shown = factors[:: max(1, len(factors) // 6)]
    fcolors = _colors(shown)
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


def directions_figure(records: list[Record], *, title: str | None = None,
                      path_stem: str | Path | None = None) -> plt.Figure:
    """Sec. 2.4: (left) the fraction of random directions with positive curvature (measured and
    predicted from Hutchinson moments) beside the fraction of positive eigenvalues per d, against
    radius; (right) measured Tr H_d/‖H_d‖_F against the exact prediction, y = x."""
    points = [r for r in records if r.get("kind") == "directions"]
    planes = [r for r in records if r.get("kind") == "plane"]
    fig, (ax_l, ax_r) = plt.subplots(1, 2, figsize=(10, 3.8))
    if not points:
        _empty(ax_l, "directions")
    _band(ax_l, points, "radius", "positive_directions", lambda r: True, "black",
          "random directions (measured)")
    _band(ax_l, points, "radius", "predicted_positive_directions", lambda r: True, "0.5",
          "random directions (predicted)", ls="--")
    dims = sorted({r["dim"] for r in planes})
    colors = _colors(dims, "plasma")
    for d in dims:
        _band(ax_l, planes, "radius", "local_convexity", lambda r, d=d: r["dim"] == d, colors[d],
              f"eigenvalues, d={d}")
    _xavier(ax_l, points)
    ax_l.set(xscale="log", xlabel=RADIUS_LABEL, ylabel="fraction positive",
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


def fig4_figure(records: list[Record], *, title: str | None = None,
                path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 4: Tr H_d/‖H_d‖_F (top) and the fraction of positive eigenvalues (bottom) against the
    radius in units of each network's Xavier radius, one column per dataset, one curve per
    architecture."""
    planes = [r for r in records if r.get("kind") == "plane"]
    datasets = sorted({r["dataset"] for r in planes}) or ["-"]
    fig, axes = plt.subplots(2, len(datasets), figsize=(5 * len(datasets), 6.6), squeeze=False)
    for j, dataset in enumerate(datasets):
        group = [r for r in planes if r["dataset"] == dataset]
        archs = list(dict.fromkeys(r["label"] for r in group))
        colors = _colors(archs, "tab10" if len(archs) <= 10 else "viridis")
        for arch in archs:
            for i, metric in enumerate(("positive_curvature", "local_convexity")):
                _band(axes[i, j], group, "radius_factor", metric,
                      lambda r, a=arch: r["label"] == a, colors[arch], arch)
        if not group:
            _empty(axes[0, j], "plane")
        for i, ylabel in enumerate((r"Tr$H$ / $\|H\|_F$", "fraction of positive eigenvalues")):
            _xavier(axes[i, j], group, factor=True)
            axes[i, j].set(xscale="log", xlabel=r"$r / r_{Xavier}$", ylabel=ylabel)
        axes[0, j].set_title(dataset)
        if axes[0, j].get_legend_handles_labels()[0]:
            axes[0, j].legend(fontsize=7)
    return finish(fig, title, path_stem)


def fig5_figure(records: list[Record], *, title: str | None = None,
                path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 5: (a) the mean loss at random points of radius r (log-log) with log K and the fitted
    power law; (b) Tr H and ‖H‖_F (full space, Hutchinson) against radius."""
    summary = radial_loss.loss_radius_summary(records)
    rows = summary["rows"]
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 3.8))
    if not rows:
        _empty(ax_a, "loss")
        _empty(ax_b, "loss")
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
    ax_a.set(xscale="log", yscale="log", xlabel=RADIUS_LABEL, ylabel="loss",
             title="(a) mean loss at radius r")
    ax_b.set(xscale="log", yscale="symlog", xlabel=RADIUS_LABEL, title="(b) Tr H and ||H||")
    for ax in (ax_a, ax_b):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


def stokes_figure(records: list[Record], *, title: str | None = None,
                  path_stem: str | Path | None = None) -> plt.Figure:
    """Eq. (4): the mean Laplacian over spheres of radius ρ (± 2 standard errors) against
    d²⟨ℓ⟩/dρ² + (D − 1)/ρ · d⟨ℓ⟩/dρ from the mean losses."""
    rows = radial_loss.stokes_summary(records)
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    if not rows:
        _empty(ax, "sphere")
    else:
        rho = np.array([row["radius"] for row in rows])
        lap = np.array([row["laplacian"] for row in rows])
        se = np.array([row["laplacian_stderr"] for row in rows])
        ax.errorbar(rho, lap, yerr=2 * se, fmt="o-", ms=3, color="black",
                    label=r"$\langle\nabla^2\ell\rangle$ (Hutchinson)")
        rhs = np.array([np.nan if row["stokes_laplacian"] is None else row["stokes_laplacian"]
                        for row in rows])
        ax.plot(rho, rhs, "s--", ms=3, color="tab:red",
                label=r"$\partial_\rho^2\langle\ell\rangle + \frac{D-1}{\rho}\partial_\rho\langle\ell\rangle$")
        _xavier(ax, [r for r in records if r.get("kind") == "sphere"])
    ax.set(xscale="log", yscale="symlog", xlabel=RADIUS_LABEL, ylabel="mean Laplacian",
           title="Stokes (Eq. 4)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


def fig2_figure(records: list[Record], *, title: str | None = None,
                path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 2: final test accuracy against the radius of the surface, one curve per d, for each
    surface (dashed: full space); last panel the intrinsic dimension against the radius."""
    from gzone.experiments import hypersurface_training as hs

    table = hs.accuracy_table(records)
    surfaces = sorted({s for s, _ in table if s != "full"}) or ["hyperplane"]
    fig, axes = plt.subplots(1, len(surfaces) + 1, figsize=(5 * (len(surfaces) + 1), 3.8))
    xavier = [r["xavier_radius"] for r in records if r.get("kind") == "hypersurface"]
    r_x = float(np.mean(xavier)) if xavier else 1.0
    dims = sorted({d for s, d in table if s != "full"})
    colors = _colors(dims, "plasma")
    for ax, surface in zip(axes, surfaces):
        if not table:
            _empty(ax, "hypersurface")
        for (s, d), accs in table.items():
            if s == surface or s == "full":
                xs = sorted(accs)
                ax.plot([x * r_x for x in xs], [accs[x] for x in xs], "o--" if s == "full" else "o-",
                        ms=3, color="black" if s == "full" else colors[d],
                        label="full space" if s == "full" else f"d={d}")
        _xavier(ax, [r for r in records if r.get("kind") == "hypersurface"])
        ax.set(xscale="log", xlabel=RADIUS_LABEL, ylabel="final test accuracy",
               title=f"random {surface}s")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    ax = axes[-1]
    found = False
    for surface, by_radius in hs.intrinsic_dimension(records).items():
        xs = sorted(by_radius)
        ys = [np.nan if by_radius[x] is None else by_radius[x] for x in xs]
        found = found or bool(np.isfinite(ys).any())
        ax.plot([x * r_x for x in xs], ys, "o-", ms=4, label=surface)
    _xavier(ax, [r for r in records if r.get("kind") == "hypersurface"])
    ax.set(xscale="log", xlabel=RADIUS_LABEL, ylabel="intrinsic dimension (90 %)",
           title="intrinsic dimension against radius" + ("" if found else " (no d reached it)"))
    if found:
        ax.set_yscale("log")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


def fig6_figure(records: list[Record], *, title: str | None = None,
                path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 6: steps to the target test accuracy against (a) the fraction of positive eigenvalues,
    (b) Tr H_d/‖H_d‖_F, (c) the initial test loss of each Xavier draw (Spearman ρ and the
    Mann–Whitney p-value in each title; draws that never reach the target drawn at the top as
    crosses); (d) the initial loss against Tr H_d/‖H_d‖_F."""
    from gzone.experiments import init_selection

    inits = {r["seed"]: r for r in records if r.get("kind") == "init"}
    trained = {r["seed"]: r for r in records if r.get("kind") == "trained"}
    seeds = sorted(set(inits) & set(trained))
    summary = init_selection.selection_summary(records)
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    names = {"local_convexity": "fraction of positive eigenvalues",
             "positive_curvature": r"Tr$H$ / $\|H\|_F$", "initial_test_loss": "initial test loss"}
    for ax, (measure, label) in zip(axes[:3], names.items()):
        if not seeds:
            _empty(ax, "init-selection")
        for s in seeds:
            x, steps = inits[s][measure], trained[s]["steps_to_target"]
            if x is None:
                continue
            if steps is None:
                ax.plot([x], [trained[s]["budget"]], "x", color="tab:red", ms=5)
            else:
                ax.plot([x], [steps], "o", color="black", ms=4)
        stats = summary["measures"].get(measure)
        ax.set(xlabel=label, ylabel="steps to target test accuracy",
               title="" if stats is None else
               f"Spearman {stats['spearman']:.2f}, MWU p={stats['p_value']:.2g}")
    ax = axes[3]
    pairs = [(inits[s]["positive_curvature"], inits[s]["initial_test_loss"]) for s in inits
             if inits[s]["positive_curvature"] is not None]
    if pairs:
        ax.plot(*np.array(pairs).T, "o", color="tab:blue", ms=4)
    radii = [r["xavier_radius"] for r in inits.values()]
    ax.set(xlabel=r"Tr$H$ / $\|H\|_F$", ylabel="initial test loss",
           title="(d) all draws at the Xavier radius" + (f" r={np.mean(radii):.3g}" if radii else ""))
    return finish(fig, title, path_stem)


def drift_figure(records: list[Record], *, title: str | None = None,
                 path_stem: str | Path | None = None) -> plt.Figure:
    """Observation 8: ‖θ_t‖ against the step (log scale) for starts inside and outside the Xavier
    radius (dotted)."""
    from gzone.experiments import radius_drift

    curves = radius_drift.drift_curves(records)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    if not curves:
        _empty(ax, "radius-drift")
    factors = sorted({c for c, _ in curves})
    colors = _colors(factors, "coolwarm")
    for (c, seed), (steps, norms) in curves.items():
        ax.plot(steps, norms, color=colors[c], lw=1.3, label=f"start {c:g} x Xavier" if seed == 0 else None)
    radii = [r["xavier_radius"] for r in records if r.get("kind") == "run"]
    if radii:
        ax.axhline(float(np.mean(radii)), color="0.4", ls=":", lw=1, label="Xavier radius")
    ax.set(yscale="log", xlabel="Adam step", ylabel=RADIUS_LABEL, title="radius drift in training")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


FIGURES = {"radius": fig3_figure, "directions": directions_figure, "architectures": fig4_figure,
           "loss-radius": fig5_figure, "stokes": stokes_figure,
           "hypersurface-training": fig2_figure, "init-selection": fig6_figure,
           "radius-drift": drift_figure}


def fort_figure(records: list[Record], study: str, *, title: str | None = None,
                path_stem: str | Path | None = None) -> plt.Figure:
    """The figure of ``study``."""
    if study not in FIGURES:
        raise ValueError(f"unknown study {study!r}; choose one of {', '.join(FIGURES)}")
    return FIGURES[study](records, title=title, path_stem=path_stem)
