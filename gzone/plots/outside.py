"""Figures of the outside-the-zone studies :mod:`gzone.experiments.outside` (ICML App. E: Fig. 11,
12 left; the lazy regime; Sec. 5's random labels).

One function per figure, ``<figure>_figure(records, *, title=None, path_stem=None)``, returning
the figure and, given a path stem, saving it as PNG and PDF (:func:`gzone.plots.finish`);
:func:`outside_figure` picks the one of a study. Missing records leave panels blank rather than
raising; nulls (non-finite values, flagged in the records) are skipped.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from gzone.experiments import lazy, uso
from gzone.experiments.base import Record
from gzone.plots import finish
from gzone.plots import training as training_plots

USO_COLOR = "black"
ALPHA_LABEL = r"initialization scale $\alpha$ (alpha)"


def _alpha_colors(alphas: list[float], name: str = "viridis") -> dict[float, tuple]:
    cmap = mpl.colormaps[name]
    spots = np.linspace(0.1, 0.85, len(alphas)) if len(alphas) > 1 else [0.5]
    return {a: cmap(s) for a, s in zip(alphas, spots)}


def _empty(ax: plt.Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} records", transform=ax.transAxes, ha="center", va="center")


def fig11_left_figure(records: list[Record], *, title: str | None = None,
                      path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 11 left: ‖θ_t‖ of the USO model (black) and ‖θ_t‖/α of the α-scaled networks against
    the step (log scale), mean over seeds; a dot where a network's softmax stopped being uniform
    (``left_uniform_at``, seed 0)."""
    curves = uso.paths(records)
    alphas = sorted({a for run, a in curves if run == "scaled"})
    colors = _alpha_colors(alphas)
    left = {r["alpha"]: r["left_uniform_at"] for r in records
            if r.get("kind") == "run" and r.get("run") == "scaled" and r.get("seed") == 0}
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    if not curves:
        _empty(ax, "uso log")
    for (run, alpha), (steps, norms) in curves.items():
        if run == "uso":
            ax.plot(steps, norms, color=USO_COLOR, lw=2.4, label="USO model", zorder=3)
            continue
        ax.plot(steps, norms, color=colors[alpha], lw=1.3, label=f"alpha={alpha:.3g}", zorder=4)
        t = left.get(alpha)
        if t is not None and t in steps:
            ax.plot([t], [norms[list(steps).index(t)]], "o", color=colors[alpha], ms=5, mec="white",
                    zorder=5)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(r"$\|\theta_t\|$ (networks: $\|\theta_t\|/\alpha$)")
    ax.grid(alpha=0.3, lw=0.3)
    if curves:
        handles, _ = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], marker="o", ls="", color="grey", mec="white",
                              label="softmax leaves uniform"))
        ax.legend(handles=handles, fontsize=7, loc="upper left")
    return finish(fig, title, path_stem)


def _retrain_curves(records: list[Record]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rows: dict[str, dict[int, list[float]]] = {}
    for r in records:
        if r.get("kind") != "retrain":
            continue
        for f in ("cos_param_init", "cos_param_neg_gradient", "train_error"):
            if r.get(f) is not None:
                rows.setdefault(f, {}).setdefault(r["uso_step"], []).append(r[f])
    return {f: (np.asarray(sorted(s)), np.asarray([np.mean(s[t]) for t in sorted(s)]))
            for f, s in rows.items()}


def fig11_right_figure(records: list[Record], *, title: str | None = None,
                       path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 11 right: along the USO path, cos(θ_t, θ0) and cos(θ_t, −g_t) (left axis) and, in
    red (right axis), the training error GD reaches from ‖θ0‖·θ_t/‖θ_t‖ in the stated budget;
    means over seeds."""
    curves = _retrain_curves(records)
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    if not curves:
        _empty(ax, "retrain")
    styles = {"cos_param_init": ("tab:blue", r"cos($\theta_t$, $\theta_0$)"),
              "cos_param_neg_gradient": ("tab:green", r"cos($\theta_t$, $-g_t$)")}
    for f, (color, label) in styles.items():
        if f in curves:
            ax.plot(*curves[f], "-o", color=color, ms=3, lw=1.3, label=label)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("USO step t")
    ax.set_ylabel("cosine similarity")
    ax.grid(alpha=0.3, lw=0.3)
    twin = ax.twinx()
    budget = sorted({(r["retrain_steps"], r["retrain_lr"]) for r in records
                     if r.get("kind") == "retrain"})
    if "train_error" in curves:
        what = (f"train error after {budget[0][0]} GD steps, lr {budget[0][1]:.3g}"
                if len(budget) == 1 else "train error after retraining")
        twin.plot(*curves["train_error"], "-s", color="tab:red", ms=3, lw=1.5, label=what)
    twin.set_ylim(-0.02, 1.02)
    twin.set_ylabel("train error (retrained)", color="tab:red")
    twin.tick_params(axis="y", colors="tab:red")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="lower left")
    return finish(fig, title, path_stem)


def fig12_left_figure(records: list[Record], *, title: str | None = None,
                      path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 12 left: test accuracy of the linear probe on the penultimate features of networks
    trained at each α (solid, min/max band over seeds) and of randomly initialised unscaled
    networks (dashed, band over seeds)."""
    table = lazy.probe_table(records)
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    if not len(table["alpha"]):
        _empty(ax, "probe")
    else:
        a = table["alpha"]
        ax.plot(a, table["mean"], "-o", color="tab:blue", ms=3, label="trained features")
        ax.fill_between(a, table["min"], table["max"], color="tab:blue", alpha=0.2, lw=0)
        mean, low, high = table["random"]
        if np.isfinite(mean):
            ax.axhline(mean, color="tab:grey", ls="--", label="random unscaled features")
            ax.axhspan(low, high, color="tab:grey", alpha=0.15, lw=0)
        ax.set_xscale("log")
        ax.legend(fontsize=7, loc="lower left")
    ax.set_xlabel(ALPHA_LABEL)
    ax.set_ylabel("linear probe test accuracy")
    ax.grid(alpha=0.3, lw=0.3)
    return finish(fig, title, path_stem)


def lazy_figure(records: list[Record], *, title: str | None = None,
                path_stem: str | Path | None = None) -> plt.Figure:
    """The lazy regime against α (means over seeds): accuracies of the network (train solid, test
    dashed) and of its trained linearisation (test dotted); the relative distance travelled
    ‖θ_t − θ0‖/‖θ0‖; agreement of the two models' test predictions and ‖z − z_lin‖/‖z‖."""
    t = lazy.lazy_table(records)
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.6))
    if not len(t["alpha"]):
        for ax in axes:
            _empty(ax, "lazy")
    a = t["alpha"]
    ax = axes[0]
    ax.plot(a, t["train_accuracy"], "-o", color="tab:blue", ms=3, label="network, train")
    ax.plot(a, t["test_accuracy"], "--o", color="tab:blue", ms=3, label="network, test")
    ax.plot(a, t["linear_test_accuracy"], ":s", color="tab:orange", ms=3, label="linearised, test")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax = axes[1]
    ax.plot(a, t["relative_distance"], "-o", color="tab:purple", ms=3)
    ax.set_yscale("log")
    ax.set_ylabel(r"$\|\theta_t-\theta_0\|/\|\theta_0\|$")
    ax = axes[2]
    ax.plot(a, t["test_agreement"], "-o", color="tab:green", ms=3, label="test prediction agreement")
    ax.plot(a, t["logit_relative_difference"], "--s", color="tab:red", ms=3,
            label=r"$\|z-z_{lin}\|/\|z\|$ (test)")
    ax.set_ylabel("network vs linearisation")
    for ax in axes:
        if len(a):
            ax.set_xscale("log")
        ax.set_xlabel(ALPHA_LABEL)
        ax.grid(alpha=0.3, lw=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return finish(fig, title, path_stem)


FIGURES = {"uso": fig11_left_figure, "uso-retrain": fig11_right_figure,
           "probe": fig12_left_figure, "lazy": lazy_figure,
           "random-labels": training_plots.fig12_right_figure}


def outside_figure(records: list[Record], study: str, *, title: str | None = None,
                   path_stem: str | Path | None = None) -> plt.Figure:
    """The figure of ``study`` (one of :data:`gzone.experiments.outside.STUDIES`)."""
    if study not in FIGURES:
        raise ValueError(f"unknown study {study!r}; choose one of {', '.join(FIGURES)}")
    return FIGURES[study](records, title=title, path_stem=path_stem)
