"""ICML Sec. 6: the conclusions "might change with adaptive algorithms such as AdaGrad or Adam" —
the Fig. 8 grid (α × η0) trained with Adam beside gradient descent.

The zone points and runs of the ICML training grid (:mod:`gzone.studies.icml._common.grid`: θ =
α·θ0(seed), full batch, the zone ‖G‖₂ > ‖H-term‖₂ at initialisation), each run once per
optimizer. GD runs at the paper's η = η0·α^(2−L); Adam at η = η0·α (``adam_lr="alpha"``: Adam's
step does not scale with the gradient, so η ∝ α keeps its size relative to ‖θ‖ = α‖θ0‖ the same
for every α; ``"paper"`` uses GD's rule). Both log the sharpness ‖H‖₂; Adam also logs its
preconditioned sharpness, the top eigenvalue of D^{-1/2} H D^{-1/2} with Adam's D = √v̂ + ε
(matrix-free: the sharpness' vmapped Lanczos on v -> D^{-1/2} H D^{-1/2} v,
:func:`gzone.training.sharpness.preconditioned_sharpness`; null at step 0, where Adam has no
second moment yet), whose stability threshold is η·λ = (2 + 2β₁)/(1 − β₁) = 38 at β₁ = 0.9 (Cohen
et al. 2022, "Adaptive gradient methods at the edge of stability").

Claims: ``adam-trains-outside-zone`` — some α outside the zone (‖G‖₂ ≤ ‖H-term‖₂ at init) where
Adam trains (best train accuracy above twice chance) at some η0 and GD at none; inconclusive when
GD itself trains at every α outside the zone (nothing to tell the optimizers apart) or nothing lies
outside. ``adam-edge-of-stability`` (paper scale) — the median over α of the median over Adam's
trained runs of η·max_t λ_t(D^{-1/2} H D^{-1/2}) / 38 lies in [0.8, 1.25]. Figures: Fig. 8's heat
maps per optimizer (zone columns outlined) and the preconditioned beside the plain sharpness
against the step.

    gzone run beyond/adam
    gzone run beyond/adam --preset cpu --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gzone.engine import BEYOND, Claim, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.engine.config import ConfigError, check_choice, check_positive, check_range, field
from gzone.engine.study import batched
from gzone.studies.icml._common import LENET300_FASHION, grid

OPTIMIZERS = ("gd", "adam")
#: Adam's stability threshold η·λ(D⁻¹H) = (2 + 2β₁)/(1 − β₁) at β₁ = 0.9 (Cohen et al. 2022)
ADAM_THRESHOLD = 38.0


@dataclasses.dataclass(frozen=True)
class Config(grid.GridConfig):
    """The Fig. 8 grid trained by GD and by Adam."""

    alpha_min: float = field(0.1, "smallest alpha of the log grid")
    alpha_max: float = field(10.0, "largest alpha of the log grid")
    num_alphas: int = field(5, "alphas on the log grid")
    lr0_min: float = field(1e-3, "smallest base learning rate lr0")
    lr0_max: float = field(0.3, "largest base learning rate lr0")
    num_lr0: int = field(4, "lr0 values on the log grid")
    optimizers: tuple[str, ...] = field(OPTIMIZERS, "optimizers, each over the whole grid",
                                        OPTIMIZERS)
    adam_lr: str = field("alpha", "Adam's eta: lr0*alpha (alpha) or the paper's lr0*alpha^(2-L)",
                         ("alpha", "paper"))
    preconditioned_sharpness: bool = field(True, "log Adam's preconditioned sharpness")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (16,), "n_train": 100, "n_test": 50, "zone_dim": 0, "num_alphas": 2,
             "alpha_min": 0.3, "alpha_max": 3.0, "num_lr0": 1, "lr0_min": 0.01, "lr0_max": 0.01,
             "steps": 6, "log_every": 3, "zone_samples": 100, "sharpness": False,
             "batch_size": 4},
    "default": {},
    "cpu": {**LENET300_FASHION, "n_train": 1000, "n_test": 1000, "num_alphas": 7,
            "alpha_min": 0.01, "alpha_max": 100.0, "num_lr0": 4, "lr0_min": 1e-3, "lr0_max": 1.0,
            "steps": 300, "log_every": 50, "zone_samples": 1000, "batch_size": 16},
    "paper": {**LENET300_FASHION, "n_train": None, "n_test": None, "num_alphas": 13,
              "alpha_min": 0.01, "alpha_max": 100.0, "num_lr0": 10, "lr0_min": 1e-4,
              "lr0_max": 3.0, "steps": 20000, "log_every": 100, "batch_size": None},
}


def validate(config: Config) -> None:
    grid.validate_grid(config)
    grid.validate_lr0_grid(config)
    check_positive(config, "alpha_min", "alpha_max")
    check_range(config, "alpha_min", "alpha_max")
    check_choice(config, "adam_lr", ("alpha", "paper"))
    if not config.optimizers or any(o not in OPTIMIZERS for o in config.optimizers) \
            or len(set(config.optimizers)) != len(config.optimizers):
        raise ConfigError("optimizers", f"{{name}} must name distinct optimizers among "
                                        f"{', '.join(OPTIMIZERS)}, got {config.optimizers!r}")


def alphas(config: Config) -> list[float]:
    return np.geomspace(config.alpha_min, config.alpha_max, config.num_alphas).tolist()


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    base = grid.grid_points(config, alphas(config), grid.lr0_grid(config))
    zone = [p for p in base if p["kind"] == "zone"]
    return zone + [{**p, "optimizer": o} for o in config.optimizers for p in base
                   if p["kind"] == "run"]


chunks = batched(lambda config: config.batch_size,
                 group=lambda config, p: (p["kind"], p.get("optimizer")), kinds=("run",))


def _of(records: list[dict[str, Any]], optimizer: str) -> list[dict[str, Any]]:
    """The zone records and the runs and logs of ``optimizer``."""
    return [r for r in records if r.get("kind") == "zone" or r.get("optimizer") == optimizer]


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (optimizer, α): :func:`gzone.studies.icml._common.grid.rows`, and for Adam the median
    over its trained runs of η·max λ(D^{-1/2} H D^{-1/2}) / 38."""
    out = []
    optimizers = sorted({r["optimizer"] for r in records if r.get("kind") == "run"})
    for o in optimizers:
        mine = _of(records, o)
        for row in grid.rows(mine):
            ratio = [r["lr_max_preconditioned_sharpness"] / ADAM_THRESHOLD for r in mine
                     if r.get("kind") == "run" and r["alpha"] == row["alpha"]
                     and r["outcome"] == "trained"
                     and r.get("lr_max_preconditioned_sharpness") is not None]
            out.append({"optimizer": o, **row,
                        "eos_ratio": float(np.median(ratio)) if ratio else None})
    return out


def _trajectories(records: list[dict[str, Any]], optimizer: str, name: str
                  ) -> dict[tuple, tuple[list[int], list[float]]]:
    """(α, η0, seed) -> (steps, η·``name``) of the ``log`` records of ``optimizer`` (|λ| for the
    plain sharpness, the largest-magnitude eigenvalue; null entries skipped)."""
    runs: dict[tuple, list[tuple[int, float]]] = {}
    for r in records:
        if r.get("kind") == "log" and r.get("optimizer") == optimizer and r.get(name) is not None:
            runs.setdefault((r["alpha"], r["lr0"], r["seed"]), []).append(
                (r["step"], r["lr"] * abs(r[name])))
    return {k: ([p[0] for p in sorted(v)], [p[1] for p in sorted(v)]) for k, v in sorted(runs.items())}


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """Fig. 8's heat maps for each optimizer (``<path_stem>-<optimizer>``: best train accuracy,
    largest ‖θ‖, η·‖H‖₂ at initialisation, the zone's α columns outlined), and the sharpness
    against the step (``<path_stem>``): Adam's η·λ_max(D^{-1/2} H D^{-1/2}) against its threshold
    38 (left) beside the plain η·|λ_max(H)| of GD (solid) and Adam (dotted) against GD's 2
    (right); colour: α. The heat maps' "inadmissible" mark (η·‖H‖₂ > 2 at initialisation) and
    the rows' ``inadmissible*`` columns are GD's criterion, shown for Adam only for comparison:
    Adam's own is η·λ_max(D^{-1/2} H D^{-1/2}) > 38, undefined at initialisation (left panel)."""
    import matplotlib.pyplot as plt

    from gzone import plots
    from gzone.studies.icml._common import grid_figures

    drawn = []
    optimizers = sorted({r["optimizer"] for r in records if r.get("kind") == "run"})
    for o in optimizers:
        drawn.append(grid_figures.fig8_figure(
            _of(records, o), title=f"{title or 'beyond/adam'}: {o}",
            path_stem=None if path_stem is None else f"{path_stem}-{o}"))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    cmap = plt.get_cmap("viridis")
    alpha_values = sorted({r["alpha"] for r in records if r.get("kind") == "run"})

    def colour(alpha: float) -> Any:
        return cmap(alpha_values.index(alpha) / max(len(alpha_values) - 1, 1))

    panels = ((left, [("adam", "preconditioned_sharpness", "-")], ADAM_THRESHOLD,
               "38 (Adam's threshold)", r"$\eta\,\lambda_{\max}(D^{-1/2} H D^{-1/2})$",
               "Adam: preconditioned sharpness"),
              (right, [("gd", "sharpness", "-"), ("adam", "sharpness", ":")], grid.ADMISSIBLE,
               "2 (GD's threshold)", r"$\eta\,|\lambda_{\max}(H)|$",
               "plain sharpness: GD (solid), Adam (dotted)"))
    for ax, series, threshold, label, ylabel, heading in panels:
        drawn_any = False
        for optimizer, name, style in series:
            for (alpha, _lr0, _seed), (steps, values) in _trajectories(records, optimizer, name).items():
                ax.plot(steps, values, color=colour(alpha), ls=style, lw=0.8, alpha=0.8)
                drawn_any = True
        ax.axhline(threshold, color="red", ls="--", lw=1, label=label)
        if drawn_any:  # dead runs (λ ~ 0) would stretch the log axis over 30 decades
            ax.set_yscale("log")
            ax.set_ylim(bottom=max(ax.get_ylim()[0], threshold * 1e-6))
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(heading, fontsize=9)
        ax.legend(fontsize=8)
    if alpha_values:
        mappable = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, max(len(alpha_values) - 1, 1)))
        bar = fig.colorbar(mappable, ax=[left, right], ticks=range(len(alpha_values)))
        bar.ax.set_yticklabels([f"{a:.3g}" for a in alpha_values])
        bar.set_label(r"$\alpha$")
    if title:
        fig.suptitle(title, fontsize=10)
    plots.save(fig, path_stem)
    return [fig, *drawn]


def check_adam_outside_zone(rows: list[dict[str, Any]]) -> Finding:
    """Adam trains from some α outside the zone where GD trains at no η0."""
    expected = ("some alpha outside the zone (||G||_2 <= ||H-term||_2 at init) where Adam trains "
                "at some lr0 and GD at none")
    by = {(r["optimizer"], r["alpha"]): r for r in rows}
    outside = sorted(a for (o, a), r in by.items() if o == "gd" and r.get("zone") is False)
    trains = {o: [a for a in outside if (by.get((o, a)) or {}).get("trained", 0) > 0]
              for o in OPTIMIZERS}
    gains = [a for a in outside if a in trains["adam"] and a not in trains["gd"]]
    losses = [a for a in outside if a in trains["gd"] and a not in trains["adam"]]
    measured = {"alphas_outside_zone": outside, "gd_trains_at": trains["gd"],
                "adam_trains_at": trains["adam"], "adam_only": gains, "gd_only": losses,
                "best_train_gd": {f"{a:.3g}": (by.get(("gd", a)) or {}).get("best_train") for a in outside},
                "best_train_adam": {f"{a:.3g}": (by.get(("adam", a)) or {}).get("best_train")
                                    for a in outside}}
    if not outside or not any(o == "adam" for o, _ in by):
        return Finding(INCONCLUSIVE, measured, expected)
    if gains:
        return Finding(REPRODUCED, measured, expected)
    if len(trains["gd"]) == len(outside):  # GD trains everywhere outside: nothing to tell apart
        return Finding(INCONCLUSIVE, measured, expected)
    return Finding(NOT_REPRODUCED, measured, expected)


def check_edge_of_stability(rows: list[dict[str, Any]]) -> Finding:
    """Adam's trained runs reach its stability threshold: η·max λ(D^{-1/2} H D^{-1/2}) within a
    factor 1.25 of 38 (median over α)."""
    expected = f"median eta*lambda_max(P^-1/2 H P^-1/2)/{ADAM_THRESHOLD:g} in [0.8, 1.25]"
    ratios = {f"{r['alpha']:.3g}": r.get("eos_ratio") for r in rows if r.get("optimizer") == "adam"}
    finite = [v for v in ratios.values() if v is not None]
    measured = {"eos_ratio_by_alpha": ratios}
    if not finite:
        return Finding(INCONCLUSIVE, measured, expected)
    median = float(np.median(finite))
    measured["median"] = median
    return Finding(REPRODUCED if 0.8 <= median <= 1.25 else NOT_REPRODUCED, measured, expected)


STUDY = Study(
    name="beyond/adam", paper=BEYOND, reproduces="ICML Sec. 6 (adaptive optimizers), Fig. 8 grid",
    title="the Fig. 8 grid with Adam beside GD; Adam's preconditioned sharpness",
    config=Config, presets=PRESETS, validate=validate, prepare=grid.prepare, points=points,
    measure=grid.measure, summarize=summarize, figure=figure,
    done={"zone": ("alpha", "seed"), "run": ("alpha", "lr0", "seed", "optimizer")},
    chunks=chunks, work=grid.work, kinds=("zone", "run", "log"),
    unused=lambda config: grid.unused_fields(config) + (("optimizer",)),
    claims=(
        Claim("adam-trains-outside-zone", "ICML Sec. 6 (conjecture)",
              "Adam trains from initialisations outside the Goldilocks zone where GD does not.",
              check_adam_outside_zone, scales=("cpu", "paper")),
        Claim("adam-edge-of-stability", "Cohen et al. 2022 (Adam at the edge of stability)",
              "Adam's preconditioned sharpness rises to its stability threshold 38/eta.",
              check_edge_of_stability, scales=("paper",)),
    ),
    report_table=True, doc=__doc__)
