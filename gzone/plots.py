"""Matplotlib figures in the papers' layouts. Every function returns the figure and, given a path
stem, saves it as PNG and PDF."""

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
X_LABELS = {
    "alpha": r"initialization scale $\alpha$",
    "temperature": r"softmax temperature $T$",
    "dim": r"subspace dimension $d$",
}


def save(fig: plt.Figure, path_stem: str | Path | None) -> None:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` (nothing when ``path_stem`` is None)."""
    if path_stem is None:
        return
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".png", ".pdf"):
        fig.savefig(stem.with_suffix(suffix), dpi=150, bbox_inches="tight")


def _band(ax, records: list[dict[str, Any]], x_field: str, term: str, metric: str) -> None:
    xs = sorted({r[x_field] for r in records if r["term"] == term})
    med, low, high = [], [], []
    for x in xs:
        values = [r[metric] for r in records if r["term"] == term and r[x_field] == x]
        values = np.array([v for v in values if v is not None], dtype=float)
        med.append(np.median(values) if values.size else np.nan)
        low.append(values.min() if values.size else np.nan)
        high.append(values.max() if values.size else np.nan)
    style = TERM_STYLE[term]
    ax.plot(xs, med, marker="o", ms=3, color=style["color"], label=style["label"])
    ax.fill_between(xs, low, high, color=style["color"], alpha=0.2, lw=0)


def zone_figure(
    records: list[dict[str, Any]],
    x_field: str = "alpha",
    *,
    title: str | None = None,
    path_stem: str | Path | None = None,
) -> plt.Figure:
    """ICML Fig. 2 layout: positive curvature (top) and spectral norm ‖·‖₂ (bottom, log scale) of
    the Hessian, G-term and H-term against ``x_field``; seeds as min/max bands around the median.
    The dimension sweep (Fig. 4 left) shows positive curvature only, with the √d bound."""
    terms = [t for t in TERM_STYLE if any(r["term"] == t for r in records)]
    rows = 1 if x_field == "dim" else 2
    fig, axes = plt.subplots(rows, 1, figsize=(5.5, 3.2 * rows), sharex=True, squeeze=False)
    for term in terms:
        _band(axes[0, 0], records, x_field, term, "positive_curvature")
        if rows == 2:
            _band(axes[1, 0], records, x_field, term, "spectral_norm")
    axes[0, 0].set_ylabel(r"positive curvature $\mathrm{Tr}/\|\cdot\|_F$")
    axes[0, 0].axhline(0, color="grey", lw=0.5)
    if x_field == "dim":
        dims = np.array(sorted({r["dim"] for r in records}), dtype=float)
        axes[0, 0].plot(dims, np.sqrt(dims), ls="--", color="grey", label=r"bound $\sqrt{d}$")
    else:
        axes[1, 0].set_ylabel(r"spectral norm $\|\cdot\|_2$")
        axes[1, 0].set_yscale("log")
        for ax in axes[:, 0]:
            ax.axvline(1.0, color="orange", lw=4, alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both", lw=0.3)
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel(X_LABELS.get(x_field, x_field))
    if title:
        axes[0, 0].set_title(title, fontsize=10)
    fig.tight_layout()
    save(fig, path_stem)
    return fig
