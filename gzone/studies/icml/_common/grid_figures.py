"""Figures of the training grid of ICML Sec. 5 (:mod:`.grid`): Fig. 8 (heat maps over α × η0),
Fig. 9 (accuracy curves) and Fig. 12 right (zero logits against the step).

One function per figure, ``<figure>_figure(records, *, title=None, path_stem=None)``, drawn from
the ``log`` / ``run`` / ``zone`` records; every one returns the figure and, given a path stem,
saves it as PNG and PDF (:func:`gzone.plots.finish`). Missing records leave panels blank (or say
so) rather than raising; non-finite numbers, stored as null, are skipped. Imported only when a
figure is drawn (running a study needs no matplotlib).

In the Fig. 8 heat maps the Goldilocks strip (the α columns in the zone, ‖G‖₂ > ‖H-term‖₂ at
initialisation for most seeds) is outlined (white, black rim); the overlay patches carry a ``gid``
(:data:`STRIP_GID`, :data:`ZERO_LOGITS_GID`, :data:`DIVERGED_GID`, :data:`INADMISSIBLE_GID`) and,
for the strip, the covered α values in ``patch.alphas``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patheffects
from matplotlib.colors import LogNorm, Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from gzone.plots import ALPHA_LABEL, LR0_LABEL, finish
from gzone.studies.icml._common import grid

Record = dict

STRIP_GID = "goldilocks"
ZERO_LOGITS_GID = "zero-logits"
DIVERGED_GID = "diverged"
INADMISSIBLE_GID = "inadmissible"
#: the strip's outline: white with a black rim, legible on every colour map and overlay
STRIP_STYLE = {"facecolor": "none", "edgecolor": "white", "lw": 2.2, "zorder": 4, "clip_on": False,
               "path_effects": [patheffects.withStroke(linewidth=4.5, foreground="black")]}
#: the full-space zone, where the records also have the d-plane one: a dashed rim inside it
STRIP_FULL_GID = "goldilocks-full-space"
STRIP_FULL_STYLE = {"facecolor": "none", "edgecolor": "black", "lw": 1.2, "ls": (0, (3, 2)),
                    "zorder": 5, "clip_on": False}
ZERO_LOGITS_COLOR = "#7fdbff"  # azure
INADMISSIBLE_COLOR = "#ff8fc8"  # pink
LABELS_TITLES = {"true": "true labels", "random-fixed": "random labels (drawn once)",
                 "random-per-step": "random labels (redrawn every step)"}


#: line styles telling the learning rates of one panel apart
LR0_STYLES = ("-", "--", "-.", (0, (3, 1, 1, 1, 1, 1)), (0, (5, 1)), (0, (1, 1)))


def _cmap(name: str) -> mpl.colors.Colormap:
    """Colormap ``name`` with NaN (masked) cells transparent."""
    return mpl.colormaps[name].with_extremes(bad="none")


def _tick_labels(ax: plt.Axes, axis: str, values: np.ndarray) -> None:
    """Cell-centred ticks labelled ``:.3g`` (every other label when there are more than 9)."""
    step = 2 if len(values) > 9 else 1
    labels = [f"{v:.3g}" if i % step == 0 else "" for i, v in enumerate(values)]
    if axis == "x":
        ax.set_xticks(range(len(values)), labels, rotation=45 if len(values) > 5 else 0)
    else:
        ax.set_yticks(range(len(values)), labels)


def _log_norm(values: np.ndarray) -> Normalize:
    """Log colour scale over the finite positive ``values`` (linear 0..1 when there are none)."""
    good = values[np.isfinite(values) & (values > 0)]
    if not good.size:
        return Normalize(0, 1)
    lo, hi = float(good.min()), float(good.max())
    if hi <= lo:
        lo, hi = lo / 2, hi * 2
    return LogNorm(lo, hi)


def _cells(ax: plt.Axes, mask: np.ndarray, gid: str, **style) -> int:
    """A rectangle on every (α, η0) cell of the (A, R) ``mask``; how many were drawn."""
    count = 0
    for i, j in zip(*np.nonzero(mask)):
        ax.add_patch(Rectangle((i - 0.5, j - 0.5), 1, 1, gid=gid, **style))
        count += 1
    return count


def _strip(ax: plt.Axes, alphas: np.ndarray, in_zone: np.ndarray, num_lr0: int,
           style: dict | None = None, gid: str = "goldilocks") -> None:
    """The Goldilocks strip: one outlined rectangle per run of adjacent in-zone α columns."""
    i = 0
    while i < len(alphas):
        if not in_zone[i]:
            i += 1
            continue
        k = i
        while k + 1 < len(alphas) and in_zone[k + 1]:
            k += 1
        patch = Rectangle((i - 0.5, -0.5), k - i + 1, num_lr0, gid=gid, **(style or STRIP_STYLE))
        patch.alphas = [float(a) for a in alphas[i:k + 1]]
        ax.add_patch(patch)
        i = k + 1


def _zone_columns(records: list[Record], alphas: np.ndarray, space: str = "auto") -> np.ndarray:
    """Whether each α of ``alphas`` is in the zone (False where no zone record was written), as
    :func:`grid.zone_alphas` says in ``space``."""
    zone = grid.zone_alphas(records, space).items()
    return np.array([any(inside and np.isclose(a, alpha, rtol=1e-9, atol=0) for a, inside in zone)
                     for alpha in alphas], bool)


def fig8_figure(records: list[Record], *, title: str | None = None,
                path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 8: heat maps over (α, η0), mean over seeds — the best train accuracy (left), the
    largest parameter norm (middle; azure: most seeds end with over 75 % zero-logit samples,
    hatched: most seeds diverge) and η·‖H‖₂ at initialisation (right; pink: above 2,
    inadmissible); the Goldilocks zone's α columns outlined. Blank cells: not run."""
    table = grid.run_table(records)
    alphas, lr0s = table["alpha"], table["lr0"]
    zone_records = [r for r in records if r.get("kind") == "zone"]
    projected = bool(zone_records) and all("in_zone_projected" in r for r in zone_records)
    in_zone = _zone_columns(records, alphas)
    in_full = _zone_columns(records, alphas, "full") if projected else np.zeros(len(alphas), bool)
    zone_dim = next((r.get("zone_dim") for r in zone_records), None)
    fig, axes = plt.subplots(1, 3, figsize=(4.2 * 3 + 1.2, 3.9))
    panels = (("max_train_accuracy", "max train accuracy", "viridis"),
              ("max_parameter_norm", r"max parameter norm $\|\theta\|$", "magma"),
              ("lr_sharpness", r"$\eta\,\|H\|_2$ at initialization", "cividis"))
    marks = {ZERO_LOGITS_GID: 0, DIVERGED_GID: 0, INADMISSIBLE_GID: 0}
    for ax, (field, label, cmap) in zip(axes, panels):
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(ALPHA_LABEL)
        ax.set_ylabel(LR0_LABEL)
        if not len(alphas):
            ax.text(0.5, 0.5, "no run records", transform=ax.transAxes, ha="center", va="center")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        values = np.asarray(table[field], float)
        norm = Normalize(0, 1) if field == "max_train_accuracy" else _log_norm(values)
        image = ax.imshow(np.ma.masked_invalid(values.T), origin="lower", aspect="auto",
                          cmap=_cmap(cmap), norm=norm, interpolation="nearest")
        ax.set_xlim(-0.5, len(alphas) - 0.5)
        ax.set_ylim(-0.5, len(lr0s) - 0.5)
        fig.colorbar(image, ax=ax, label=label)
        _tick_labels(ax, "x", alphas)
        _tick_labels(ax, "y", lr0s)
        with np.errstate(invalid="ignore"):
            if field == "max_parameter_norm":
                marks[ZERO_LOGITS_GID] += _cells(
                    ax, table["zero_logits"] > 0.5, ZERO_LOGITS_GID, facecolor=ZERO_LOGITS_COLOR,
                    edgecolor="none", zorder=2)
                marks[DIVERGED_GID] += _cells(
                    ax, table["diverged"] > 0.5, DIVERGED_GID, facecolor=(0.6, 0.6, 0.6, 0.6),
                    edgecolor="black", hatch="xx", lw=0, zorder=3)
            elif field == "lr_sharpness":
                marks[INADMISSIBLE_GID] += _cells(
                    ax, values > grid.ADMISSIBLE, INADMISSIBLE_GID,
                    facecolor=INADMISSIBLE_COLOR, edgecolor="none", zorder=2)
        _strip(ax, alphas, in_zone, len(lr0s))
        _strip(ax, alphas, in_full, len(lr0s), STRIP_FULL_STYLE, STRIP_FULL_GID)
    handles = []
    where = f"d = {zone_dim} plane, as Fig. 2" if projected else "full space"
    if in_zone.any():
        handles.append(Patch(**{k: v for k, v in STRIP_STYLE.items() if k != "zorder"},
                             label=rf"Goldilocks zone ($\|G_*\|_2 > \|H_*\|_2$ at initialization,"
                                   f" {where})"))
    if in_full.any():
        handles.append(Patch(**{k: v for k, v in STRIP_FULL_STYLE.items() if k != "zorder"},
                             label="the zone in full space (Lanczos)"))
    if marks[ZERO_LOGITS_GID]:
        handles.append(Patch(facecolor=ZERO_LOGITS_COLOR, label=(
            f"> {grid.ZERO_LOGIT_MARK:.0%} zero-logit samples at the end")))
    if marks[DIVERGED_GID]:
        handles.append(Patch(facecolor=(0.6, 0.6, 0.6, 0.6), edgecolor="black", hatch="xx",
                             lw=0, label="diverged"))
    if marks[INADMISSIBLE_GID]:
        handles.append(Patch(facecolor=INADMISSIBLE_COLOR, label=(
            rf"inadmissible: $\eta\,\|H\|_2 > {grid.ADMISSIBLE:g}$")))
    if handles:  # below the panels (tight_layout leaves figure legends alone; savefig keeps it)
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(len(handles), 3), fontsize=8, frameon=False)
    return finish(fig, title, path_stem)


def _log_alphas(records: list[Record]) -> list[float]:
    return sorted({r["alpha"] for r in records if r.get("kind") == "log"})


def _lr0_colors(lr0s: list[float], name: str = "plasma") -> dict[float, tuple]:
    """One colour of the sequential colormap ``name`` per η0 (in order, ends trimmed)."""
    cmap = mpl.colormaps[name]
    spots = np.linspace(0.1, 0.85, len(lr0s)) if len(lr0s) > 1 else [0.5]
    return {lr0: cmap(s) for lr0, s in zip(lr0s, spots)}


def _panel_row(count: int, width: float) -> tuple[plt.Figure, np.ndarray]:
    """A row of ``count`` panels (one, saying "no log records", when there are none) with a
    shared y axis, each ``width`` inches wide."""
    cols = max(count, 1)
    fig, axes = plt.subplots(1, cols, figsize=(width * cols + 1.5, 3.5), sharey=True, squeeze=False)
    if not count:
        axes[0, 0].text(0.5, 0.5, "no log records", transform=axes[0, 0].transAxes, ha="center",
                        va="center")
    return fig, axes[0]


def fig9_figure(records: list[Record], *, title: str | None = None,
                path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 9: train (solid) and test (dashed) accuracy against the step, one panel per α of the
    ``log`` records, one colour per η0, mean over seeds."""
    alphas = _log_alphas(records)
    lr0s = sorted({r["lr0"] for r in records if r.get("kind") == "log"})
    colors = _lr0_colors(lr0s)
    fig, axes = _panel_row(len(alphas), 4.0)
    for ax, alpha in zip(axes, alphas):
        for field, ls in (("train_accuracy", "-"), ("test_accuracy", "--")):
            for lr0, (steps, values) in grid.curves(records, alpha, field).items():
                ax.plot(steps, values, color=colors[lr0], ls=ls, lw=1.2,
                        marker="o" if len(steps) == 1 else None, ms=3)
        ax.set_title(rf"$\alpha$ = {alpha:.3g}", fontsize=9)
    for ax in axes:
        ax.set_ylim(0, 1)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, lw=0.3)
    axes[0].set_ylabel("accuracy")
    handles = [Line2D([], [], color=colors[lr0], label=rf"$\eta_0$ = {lr0:.3g}") for lr0 in lr0s]
    if handles:
        handles += [Line2D([], [], color="black", ls="-", label="train"),
                    Line2D([], [], color="black", ls="--", label="test")]
        axes[-1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    return finish(fig, title, path_stem)


def fig12_right_figure(records: list[Record], *, title: str | None = None,
                       path_stem: str | Path | None = None) -> plt.Figure:
    """Fig. 12 right: the fraction of zero-logit samples against the step, one line per
    (α, η0) run (mean over seeds), coloured by α, one line style per η0; one panel per label
    kind, titled by the labels it shows (true labels when the records name none)."""
    data = grid.zero_logit_curves(records)
    order = {name: i for i, name in enumerate(LABELS_TITLES)}
    kinds = sorted(data, key=lambda k: (order.get(k, len(order)), str(k)))
    alphas = sorted({a for runs in data.values() for a, _ in runs})
    lr0s = sorted({lr0 for runs in data.values() for _, lr0 in runs})
    cmap = mpl.colormaps["viridis"]
    spots = np.linspace(0.0, 0.9, len(alphas)) if len(alphas) > 1 else [0.4]
    colors = {a: cmap(s) for a, s in zip(alphas, spots)}
    styles = {lr0: LR0_STYLES[i % len(LR0_STYLES)] for i, lr0 in enumerate(lr0s)}
    fig, axes = _panel_row(len(kinds), 4.2)
    for ax, kind in zip(axes, kinds):
        for (alpha, lr0), (steps, values) in data[kind].items():
            ax.plot(steps, values, color=colors[alpha], ls=styles[lr0], lw=1.1, alpha=0.85,
                    marker="o" if len(steps) == 1 else None, ms=3)
        ax.set_title(LABELS_TITLES.get(kind or "true", str(kind)), fontsize=9)
    for ax in axes:
        ax.axhline(grid.ZERO_LOGIT_MARK, color="grey", lw=0.8, ls=(0, (1, 3)))
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, lw=0.3)
    axes[0].set_ylabel("fraction of zero-logit samples")
    handles = [Line2D([], [], color=colors[a], label=rf"$\alpha$ = {a:.3g}") for a in alphas]
    if handles:
        handles += [Line2D([], [], color="black", ls=styles[lr0], label=rf"$\eta_0$ = {lr0:.3g}")
                    for lr0 in lr0s]
        handles.append(Line2D([], [], color="grey", lw=0.8, ls=(0, (1, 3)),
                              label=f"{grid.ZERO_LOGIT_MARK:.0%} mark"))
        axes[-1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    return finish(fig, title, path_stem)
