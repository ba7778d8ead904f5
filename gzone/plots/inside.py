"""Figures of the Section-4 and Appendix-D studies (ICML Fig. 3, 4 right, 5 left and right, 6, 10).

One function per study, ``<study>_figure(records, *, title=None, path_stem=None)``, drawn from the
records of :mod:`gzone.experiments` (the registry :data:`gzone.experiments.inside.STUDIES` connects
each study to its figure); every one returns the figure and, given a path stem, saves it as PNG
and PDF (:func:`gzone.plots.finish`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from gzone.experiments import (
    gamma_entropy,
    gradient_cosines,
    gradient_prior,
    many_inits,
    pre_collapse,
)
from gzone.experiments.base import Record, spearman
from gzone.experiments.gterm_prediction import _band, _by
from gzone.plots import finish


def fig3_figure(records: list[Record], *, title: str | None = None,
                path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 3: positive curvature of the true G-term and of E G (Eq. 8) vs α, median and min/max
    bands over seeds (left; dashed: the class-means diagnostic), and every (seed, α) point
    against its mean softmax entropy (right)."""
    recs = [r for r in records if r.get("kind") == "point"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    styles = (("gterm_positive_curvature", "true G-term $G_*$", "tab:blue", "-"),
              ("predicted_positive_curvature", r"$\mathbb{E}G_*$, Eq. (8)", "tab:orange", "-"),
              ("predicted_positive_curvature_means", r"Eq. (7) with estimated $c_k$", "grey", "--"))
    for field, label, color, ls in styles:
        xs, med, low, high = _band(_by(recs, "alpha", field))
        axes[0].plot(xs, med, marker="o", ms=3, color=color, ls=ls, label=label)
        if ls == "-":
            axes[0].fill_between(xs, low, high, color=color, alpha=0.25, lw=0)
            values = [np.nan if r[field] is None else r[field] for r in recs]
            axes[1].scatter([r["mean_entropy"] for r in recs], values, s=10, color=color,
                            label=label)
    axes[0].set_xscale("log")
    axes[0].set_xlabel(r"initialization scale $\alpha$")
    axes[1].set_xlabel("mean softmax entropy (nats)")
    for ax in axes:
        ax.set_ylabel(r"positive curvature $\mathrm{Tr}/\|\cdot\|_F$")
        ax.grid(alpha=0.3, lw=0.3)
        ax.legend(fontsize=8)
    return finish(fig, title, path_stem)


def fig4_right_figure(records: list[Record], *, title: str | None = None,
                      path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 4 right: Γ_p^-2 vs entropy, one pink curve per logit set, red for the average matrix."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for h, g in gamma_entropy._curves(records, "set").values():
        ax.plot(h, g, color="tab:pink", alpha=0.5, lw=1)
    batch = gamma_entropy._curves(records, "batch").get(-1)
    if batch:
        ax.plot(*batch, color="red", lw=2, label="average matrix")
        ax.legend(fontsize=8)
    ax.set_xlabel(r"softmax entropy $\mathbb{H}(p)$ (nats)")
    ax.set_ylabel(r"$\Gamma_p^{-2}$")
    ax.grid(alpha=0.3, lw=0.3)
    return finish(fig, title, path_stem, ax)


def fig5_left_figure(records: list[Record], *, title: str | None = None,
                     path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 5 left: mean cosine similarity matrix (± std over initialisations annotated)."""
    names, mean, std = gradient_cosines.cosine_table(records)
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2.2, 1.1 * len(names) + 1.5))
    image = ax.imshow(mean, vmin=-1, vmax=1, cmap="RdBu_r")
    for i in range(len(names)):
        for j in range(len(names)):
            text = "1" if i == j else f"{mean[i, j]:.2f}\n±{std[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    fig.colorbar(image, ax=ax, label="gradient cosine similarity")
    return finish(fig, title, path_stem, ax)


def fig5_right_figure(records: list[Record], *, title: str | None = None,
                      path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 5 right: gradient norm vs ‖Q̂ − Q‖₂ with the fitted and both predicted slopes."""
    s = gradient_prior.summarize(records)
    priors = [r for r in records if r.get("kind") == "prior"]
    gap = np.array([r["q_gap"] for r in priors], float)
    norm = np.array([r["gradient_norm"] for r in priors], float)
    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.scatter(gap, norm, s=6, alpha=0.6, color="tab:blue", label="subsets")
    xs = np.linspace(0, gap.max() * 1.05 if gap.size else 1, 50)
    ax.plot(xs, s["fitted_slope"] * xs, color="black", lw=1, label=f"fit {s['fitted_slope']:.3g}")
    ax.plot(xs, s["slope_exact"] * xs, color="tab:green", ls="--",
            label=rf"$\sqrt{{P}}\sigma_c$ = {s['slope_exact']:.3g}")
    ax.plot(xs, s["slope_paper"] * xs, color="tab:red", ls=":",
            label=rf"$P\sigma_c^2$ = {s['slope_paper']:.3g} (as printed)")
    top = max(norm.max() if norm.size else 1, 1e-12) * 1.3
    ax.set_ylim(0, top)
    ax.set_xlabel(r"$\|\hat Q - Q\|_2$")
    ax.set_ylabel(r"gradient norm $\|\nabla_\theta \ell\|$")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, lw=0.3)
    return finish(fig, title, path_stem, ax)


def fig6_figure(records: list[Record], *, title: str | None = None,
                path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 6: positive curvature, gradient norm and initial loss against the mean softmax entropy
    (colour: positive curvature of the Hessian); Spearman ρ in each title."""
    col = many_inits.columns(records)
    panels = (("hessian_positive_curvature", "positive curvature (Hessian)"),
              ("gradient_norm", "gradient norm"), ("loss", "initial loss"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (field, label) in zip(axes, panels):
        sc = ax.scatter(col["mean_entropy"], col[field], c=col["hessian_positive_curvature"], s=8,
                        cmap="viridis")
        ax.set_xlabel("mean softmax entropy (nats)")
        ax.set_ylabel(label)
        ax.set_title(rf"Spearman $\rho$ = {spearman(col['mean_entropy'], col[field]):.2f}",
                     fontsize=9)
        ax.grid(alpha=0.3, lw=0.3)
    fig.colorbar(sc, ax=axes[-1], label="positive curvature")
    return finish(fig, title, path_stem)


def fig10_figure(records: list[Record], *, title: str | None = None,
                 path_stem: str | Path | None = None, floor: float = 1e-30) -> plt.Figure:
    """Fig. 10: top row, first-layer top eigenvector images (mean |·| over hidden units, own
    colour scale each); bottom, the tracked per-sample entropies vs α (log scale, clipped at
    ``floor``; the last uncertain sample in black) and positive curvature of H and G."""
    eig = sorted((r for r in records if r.get("kind") == "eigvec"), key=lambda r: r["alpha"])
    ent = sorted((r for r in records if r.get("kind") == "entropy"), key=lambda r: r["alpha"])
    curv = sorted((r for r in records if r.get("kind") == "curvature"), key=lambda r: r["alpha"])
    cols = max(len(eig), 1)
    fig = plt.figure(figsize=(max(2.2 * cols, 7), 6))
    grid = fig.add_gridspec(2, cols, height_ratios=(1, 1.2))
    for i, r in enumerate(eig):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(np.asarray(r["heatmap"], float).reshape(r["heatmap_shape"]), cmap="magma")
        ax.set_title(rf"$\alpha$={r['alpha']:.3g}, share {r['top_share']:.2f}"
                     f"\n|cos| w/ #{r['top_sample']}: {r['top_sample_cosine']:.2f}", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    if ent:
        alphas = np.array([r["alpha"] for r in ent])
        tracked = np.maximum(np.array([r["tracked_entropies"] for r in ent], float), floor)
        ax.plot(alphas, tracked, lw=0.8, alpha=0.6)
        last = pre_collapse.summarize(records)["last_uncertain_sample"]
        if last is not None and last in ent[0]["tracked_samples"]:
            column = ent[0]["tracked_samples"].index(last)
            ax.plot(alphas, tracked[:, column], color="black", lw=2, label=f"last uncertain #{last}")
            ax.legend(fontsize=7, loc="lower left")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(floor, 10)
        ax.set_ylabel(r"per-sample entropy $\mathbb{H}(p^\mu)$")
        for r in eig:
            ax.axvline(r["alpha"], color="grey", lw=0.5, ls="--")
    ax.set_xlabel(r"initialization scale $\alpha$")
    if curv:
        twin = ax.twinx()
        for term, color in (("hessian", "black"), ("gterm", "tab:blue")):
            twin.plot([r["alpha"] for r in curv],
                      [np.nan if r[f"{term}_positive_curvature"] is None
                       else r[f"{term}_positive_curvature"] for r in curv],
                      color=color, marker="o", ms=3, label=f"PC {term}")
        twin.set_ylabel("positive curvature")
        twin.legend(fontsize=7, loc="upper right")
    return finish(fig, title, path_stem)
