"""ICML Sec. 5, Fig. 9: training curves of low- and high-confidence initialisations.

Train and test accuracy against the step of α-scaled networks at a few chosen α (the paper:
α = 0.01 and 1,000) for every base learning rate η0 of a log grid, trained by full-batch GD at
η = η0·α^(2−L) — the runs of the Fig. 8 grid (:mod:`gzone.studies.icml._common.grid`)
at ``curve_alphas``.

    gzone run icml/curves
    gzone run icml/curves --curve-alphas 0.01,1000
    gzone run icml/curves --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gzone import training
from gzone.engine import ICML, Claim, Study
from gzone.engine.config import check_alphas, check_choice, field
from gzone.studies.icml._common import LENET300_FASHION, grid
from gzone.studies.icml._common import grid_claims as gc


@dataclasses.dataclass(frozen=True)
class Config(grid.GridConfig):
    """Accuracy curves of α-scaled networks at chosen α over an η0 grid."""

    curve_alphas: tuple[float, ...] = field((0.01, 1.0, 1000.0), "alphas of the curves, e.g. 0.01,1000")
    lr0_min: float = field(0.003, "smallest base learning rate lr0")
    lr0_max: float = field(3.0, "largest base learning rate lr0")
    num_lr0: int = field(5, "lr0 values on the log grid")
    labels: str = field("true", "true labels, or random ones drawn once / every step",
                        training.LABELS)


_PAPER = {**LENET300_FASHION, "n_train": None, "n_test": None, "num_lr0": 10, "lr0_min": 0.001,
          "lr0_max": 3.0, "steps": 20000, "log_every": 100, "batch_size": None,
          "curve_alphas": (0.01, 1.0, 1000.0)}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (32, 16), "n_train": 200, "n_test": 100, "zone_dim": 10, "num_lr0": 2, "lr0_min": 0.03,
             "lr0_max": 0.3, "steps": 40, "log_every": 20, "zone_samples": 200,
             "curve_alphas": (0.1, 10.0), "batch_size": 4},
    "default": {},
    "cpu": {**LENET300_FASHION, "n_train": 1000, "n_test": 1000, "num_lr0": 5, "lr0_min": 0.003,
            "lr0_max": 1.0, "steps": 1000, "log_every": 100, "zone_samples": 1000},
    "paper": _PAPER,
    "lenet300-fashion": _PAPER,
}


def validate(config: Config) -> None:
    grid.validate_grid(config)
    grid.validate_lr0_grid(config)
    check_choice(config, "labels", training.LABELS)
    check_alphas(config, "curve_alphas")


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    return grid.grid_points(config, [float(a) for a in config.curve_alphas], grid.lr0_grid(config))


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return grid.rows(records)


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """Fig. 9 (accuracy curves, one panel per α) and the zero-logit fraction against the step
    (``<path_stem>-zero-logits``)."""
    from gzone.studies.icml._common import grid_figures

    return [grid_figures.fig9_figure(records, title=title, path_stem=path_stem),
            grid_figures.fig12_right_figure(
                records, title=title, path_stem=None if path_stem is None else f"{path_stem}-zero-logits")]


STUDY = Study(
    name="icml/curves", paper=ICML, reproduces="Fig. 9",
    title="train and test accuracy curves of alpha-scaled networks over lr0",
    config=Config, presets=PRESETS, validate=validate, prepare=grid.prepare, points=points,
    measure=grid.measure, summarize=summarize, figure=figure,
    done={"zone": ("alpha", "seed"), "run": ("alpha", "lr0", "seed")},
    chunks=grid.chunks, work=grid.work, kinds=("zone", "run", "log"), legacy={"match": {"study": "trainability", "mode": "curves"}},
    unused=grid.unused_fields,
    claims=(
        gc.taxonomy_claim(("default", "cpu", "paper", "lenet300-fashion")),
        Claim("large-alpha-accuracy", "Fig. 9 right; App. E",
              "For alpha >> 1 LeNet-300-100 reaches about 100 % train accuracy, and its test "
              "accuracy saturates about 10 points below that of the unscaled network.",
              gc.check_large_alpha_accuracy, scales=("cpu", "paper", "lenet300-fashion")),
    ),
    doc=__doc__)
