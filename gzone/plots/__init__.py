"""Matplotlib figures in the papers' layouts. Every function returns the figure and, given a path
stem, saves it as PNG and PDF.

Records of the full parameter space (``space: "full"``, :mod:`gzone.fullspace`) are drawn dashed
next to the subspace ones in :func:`zone_figure`; :func:`density_figure` shows their spectral
densities.

This package holds the zone-sweep figures (ICML Fig. 1, 2, 4 left; Fort & Scherlis Fig. 3-4) and the
shared pieces (:func:`finish`, :func:`save`, ``TERM_STYLE``); :mod:`gzone.plots.inside` holds the
six Section-4 / Appendix-D figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

TERM_STYLE = {
    "hessian": {"label": "Hessian $H$", "color": "black"},
    "gterm": {"label": "G-term $G_*$", "color": "tab:blue"},
    "hterm": {"label": "H-term $H_*$", "color": "tab:red"},
}
#: axis labels of the quantities several figures show: one spelling each (words, then the
#: symbol in mathtext); the Fort & Scherlis radius is ``gzone.studies.fort._common.RADIUS_LABEL``
ALPHA_LABEL = r"initialization scale $\alpha$"
TEMPERATURE_LABEL = r"softmax temperature $T$"
DIM_LABEL = r"subspace dimension $d$"
LR0_LABEL = r"base learning rate $\eta_0$"
#: of the matrix each line names (Hessian, G-term, H-term)
POSITIVE_CURVATURE_LABEL = r"positive curvature $\mathrm{Tr}/\|\cdot\|_F$"
#: of the Hessian on a random d-plane alone
PLANE_POSITIVE_CURVATURE_LABEL = r"positive curvature $\mathrm{Tr}(H_d)/\|H_d\|_F$"
SPECTRAL_NORM_LABEL = r"spectral norm $\|\cdot\|_2$"
ENTROPY_LABEL = "mean softmax entropy (nats)"
GRADIENT_NORM_LABEL = r"gradient norm $\|\nabla_\theta \ell\|$"
X_LABELS = {"alpha": ALPHA_LABEL, "temperature": TEMPERATURE_LABEL, "dim": DIM_LABEL}
X_SYMBOLS = {"alpha": r"\alpha", "temperature": "T", "dim": "d"}


def _is_full(record: dict[str, Any]) -> bool:
    return record.get("space", "subspace") == "full"


def save(fig: plt.Figure, path_stem: str | Path | None) -> None:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` (nothing when ``path_stem`` is None); the
    paths written are kept in ``fig.gzone_saved``."""
    if path_stem is None:
        return
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.gzone_saved = []  # where it went (the gzone command prints it)
    for suffix in (".png", ".pdf"):
        path = stem.parent / (stem.name + suffix)
        fig.savefig(path, dpi=150, bbox_inches="tight")
        fig.gzone_saved.append(path)


def finish(
    fig: plt.Figure, title: str | None, path_stem: str | Path | None, ax: plt.Axes | None = None
) -> plt.Figure:
    """Title (on ``ax`` if given, else the whole figure), tight layout, :func:`save`; returns fig."""
    if title:
        if ax is not None:
            ax.set_title(title, fontsize=10)
        else:
            fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save(fig, path_stem)
    return fig


def _band(
    ax, records: list[dict[str, Any]], x_field: str, term: str, metric: str, full: bool = False
) -> None:
    records = [r for r in records if _is_full(r) == full]
    xs = sorted({r[x_field] for r in records if r["term"] == term})
    if not xs:
        return
    med, low, high = [], [], []
    for x in xs:
        values = [r[metric] for r in records if r["term"] == term and r[x_field] == x]
        values = np.array([v for v in values if v is not None], dtype=float)
        med.append(np.median(values) if values.size else np.nan)
        low.append(values.min() if values.size else np.nan)
        high.append(values.max() if values.size else np.nan)
    style = TERM_STYLE[term]
    label = style["label"] + (" (full space)" if full else "")
    ax.plot(xs, med, marker="s" if full else "o", ms=3, ls="--" if full else "-",
            color=style["color"], label=label)
    ax.fill_between(xs, low, high, color=style["color"], alpha=0.1 if full else 0.2, lw=0)


def zone_figure(
    records: list[dict[str, Any]],
    x_field: str = "alpha",
    *,
    title: str | None = None,
    path_stem: str | Path | None = None,
) -> plt.Figure:
    """ICML Fig. 2 layout: positive curvature (top) and spectral norm ‖·‖₂ (bottom, log scale) of
    the Hessian, G-term and H-term against ``x_field``; seeds as min/max bands around the median.
    The dimension sweep (Fig. 4 left) shows positive curvature only, with the √d bound.
    Full-space records, if any, are drawn dashed (in the dimension sweep: at d = P); records of
    other kinds (without a ``term``) are left out."""
    records = [r for r in records if "term" in r]
    terms = [t for t in TERM_STYLE if any(r["term"] == t for r in records)]
    rows = 1 if x_field == "dim" else 2
    fig, axes = plt.subplots(rows, 1, figsize=(5.5, 3.2 * rows), sharex=True, squeeze=False)
    for term in terms:
        for full in (False, True):
            _band(axes[0, 0], records, x_field, term, "positive_curvature", full)
            if rows == 2:
                _band(axes[1, 0], records, x_field, term, "spectral_norm", full)
    axes[0, 0].set_ylabel(POSITIVE_CURVATURE_LABEL)
    axes[0, 0].axhline(0, color="grey", lw=0.5)
    if x_field == "dim":
        dims = np.array(sorted({r["dim"] for r in records if not _is_full(r)}), dtype=float)
        axes[0, 0].plot(dims, np.sqrt(dims), ls="--", color="grey", label=r"bound $\sqrt{d}$")
    else:
        axes[1, 0].set_ylabel(SPECTRAL_NORM_LABEL)
        axes[1, 0].set_yscale("log")
        _informative_range(axes[1, 0], records)
        for ax in axes[:, 0]:
            ax.axvline(1.0, color="orange", lw=4, alpha=0.3)
            _shade_zone(ax, records, x_field)
    for ax in axes[:, 0]:
        ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both", lw=0.3)
    handles, _ = axes[0, 0].get_legend_handles_labels()
    extra = _zone_legend(records, x_field)
    axes[0, 0].legend(handles=handles + (extra[:1] if x_field == "dim" else extra), fontsize=7)
    axes[-1, 0].set_xlabel(X_LABELS.get(x_field, x_field))
    return finish(fig, title, path_stem, axes[0, 0])


def _medians(records: list[dict[str, Any]], x_field: str, term: str, metric: str):
    picked = [r for r in records if not _is_full(r) and r["term"] == term and r.get(metric) is not None]
    xs = sorted({r[x_field] for r in picked})
    return xs, [float(np.median([r[metric] for r in picked if r[x_field] == x])) for x in xs]


def _shade_zone(ax, records: list[dict[str, Any]], x_field: str) -> None:
    """Shade the x where the seeds' median ‖G‖₂ > ‖H-term‖₂ (Eq. 6: the zone), each run of such
    points from the geometric midpoints to its neighbours."""
    xs, g = _medians(records, x_field, "gterm", "spectral_norm")
    xh, h = _medians(records, x_field, "hterm", "spectral_norm")
    if not xs or xs != xh:
        return
    inside = [a > b for a, b in zip(g, h)]
    edges = [xs[0]] + [float(np.sqrt(a * b)) for a, b in zip(xs, xs[1:])] + [xs[-1]]
    for i, flag in enumerate(inside):
        if flag:
            ax.axvspan(edges[i], edges[i + 1], color="tab:green", alpha=0.08, lw=0)


def _informative_range(ax, records: list[dict[str, Any]], decades: float = 10.0) -> None:
    """Keep a log axis of spectral norms to ``decades`` below the largest value (values far
    below it, e.g. vanishing norms at tiny α, run off the bottom)."""
    values = [r["spectral_norm"] for r in records
              if not _is_full(r) and r.get("spectral_norm") and r["spectral_norm"] > 0]
    if values:
        top, low = max(values), min(values)
        ax.set_ylim(max(low, top * 10.0**-decades) / 2, top * 2)


def _zone_legend(records: list[dict[str, Any]], x_field: str) -> list[Any]:
    """Legend entries for what the lines do not say: the seeds' band, the x = 1 marker, the zone."""
    from matplotlib.patches import Patch

    seeds = len({r.get("seed") for r in records})
    symbol = X_SYMBOLS.get(x_field, x_field)
    return [Patch(color="grey", alpha=0.2, label=f"min-max over {seeds} seed" + "s" * (seeds != 1)),
            Patch(color="orange", alpha=0.3, label=f"${symbol} = 1$ (standard)"),
            Patch(color="tab:green", alpha=0.15, label=r"zone: $\|G_*\|_2 > \|H_*\|_2$")]


def slq_density(
    nodes: np.ndarray, weights: np.ndarray, sigma_rel: float = 0.01, num_points: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-smoothed density of SLQ quadratures (nodes and weights, one row per probe), in
    float64 NumPy: the rule of :func:`gzone.lanczos.density_from_quadrature` on the grid
    [min θ − 3σ, max θ + 3σ], σ = ``sigma_rel`` × (max θ − min θ); integrates to 1."""
    nodes, weights = np.atleast_2d(np.asarray(nodes, float)), np.atleast_2d(np.asarray(weights, float))
    ok = np.isfinite(nodes) & np.isfinite(weights)
    lo, hi = nodes[ok].min(), nodes[ok].max()
    sigma = sigma_rel * (hi - lo if hi > lo else max(abs(lo), abs(hi), 1.0))
    grid = np.linspace(lo - 3 * sigma, hi + 3 * sigma, num_points)
    z = (grid[None, :] - nodes[ok][:, None]) / sigma
    density = weights[ok] @ np.exp(-0.5 * z**2) / (sigma * np.sqrt(2 * np.pi) * nodes.shape[0])
    total = np.sum((density[1:] + density[:-1]) * np.diff(grid)) / 2  # trapezoid rule
    return grid, density / total


def density_figure(
    records: list[dict[str, Any]],
    x_field: str = "alpha",
    *,
    max_columns: int = 7,
    sigma_rel: float = 0.01,
    xscale: str = "linear",
    title: str | None = None,
    path_stem: str | Path | None = None,
) -> plt.Figure:
    """Full-space spectral densities (stochastic Lanczos quadrature) of the Hessian, G-term and
    H-term: one row per term, one column per value of ``x_field`` (at most ``max_columns``, spread
    evenly over the sweep, ends included); log-scaled density, each panel on its own eigenvalue
    range. The seeds' quadratures are pooled (their mixture estimates the density averaged over
    initialisations). ``xscale="symlog"`` (linear within 1% of max|λ|) spreads out the bulk."""
    full = [r for r in records if _is_full(r) and r.get("slq_nodes")]
    if not full:
        raise ValueError("no full-space records with SLQ nodes (run the sweep with full_space=True)")
    xs = sorted({r[x_field] for r in full})
    if len(xs) > max_columns:
        xs = [xs[i] for i in np.unique(np.linspace(0, len(xs) - 1, max_columns).round().astype(int))]
    terms = [t for t in TERM_STYLE if any(r["term"] == t for r in full)]
    fig, axes = plt.subplots(len(terms), len(xs), figsize=(2.3 * len(xs) + 0.6, 1.9 * len(terms) + 0.6),
                             squeeze=False)
    for i, term in enumerate(terms):
        for j, x in enumerate(xs):
            ax = axes[i, j]
            group = [r for r in full if r["term"] == term and r[x_field] == x]
            nodes = np.concatenate([np.asarray(r["slq_nodes"], float) for r in group])
            weights = np.concatenate([np.asarray(r["slq_weights"], float) for r in group])
            if not np.any(np.isfinite(nodes) & np.isfinite(weights)):
                ax.text(0.5, 0.5, "non-finite", transform=ax.transAxes, ha="center", fontsize=7)
                continue
            grid, density = slq_density(nodes, weights, sigma_rel)
            ax.plot(grid, density, color=TERM_STYLE[term]["color"], lw=0.8)
            ax.set_yscale("log")
            ax.set_ylim(density.max() * 1e-7, density.max() * 3)
            largest = np.nanmax(np.abs(nodes))
            if xscale == "symlog" and largest > 0:
                ax.set_xscale("symlog", linthresh=0.01 * largest)
            else:
                ax.xaxis.set_major_locator(plt.MaxNLocator(4))
            ax.tick_params(labelsize=6)
            if not largest > 0:
                ax.text(0.5, 0.5, "zero matrix", transform=ax.transAxes, ha="center", fontsize=7)
            ax.xaxis.get_offset_text().set_fontsize(6)
            ax.grid(alpha=0.3, lw=0.3)
            if i == 0:
                ax.set_title(f"${X_SYMBOLS.get(x_field, x_field)} = {x:.3g}$", fontsize=8)
            if j == 0:
                ax.set_ylabel(TERM_STYLE[term]["label"] + "\ndensity", fontsize=8)
            if i == len(terms) - 1:
                ax.set_xlabel(r"eigenvalue $\lambda$", fontsize=8)
    return finish(fig, title, path_stem)
