"""ICML Sec. 5, Fig. 8: does the Goldilocks zone predict trainability?

α-scaled homogeneous networks trained by full-batch gradient descent at η = η0·α^(2−L) over a
grid of (α, η0, seed) (:mod:`gzone.studies.icml._common.grid`): heat maps of the best train
accuracy, the largest parameter norm (zero-logit and diverged runs marked) and η·‖H‖₂ at
initialisation (inadmissible above 2), with the zone's α columns (‖G‖₂ > ‖H-term‖₂ at
initialisation) outlined; and the zero-logit fraction against the step (Fig. 12 right's panel).
``extra_alphas`` adds α to the log grid: the ``lenet5-cifar10`` preset adds 1.2 … 2.0, where
Sec. 5 puts LeNet-5's edge of trainability (α = 1.8), which the log grid (1, then 2.15) misses.
The last command is one of 4 processes (one per GPU or host), each running its slice.

    gzone run icml/trainability
    gzone run icml/trainability --labels random-per-step
    gzone run icml/trainability --preset cpu --data-dir ../shared/data
    gzone run icml/trainability --preset paper --num-processes 4 --process-id 0
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gzone import training
from gzone.engine import ICML, Claim, Study
from gzone.engine.config import (
    check_alphas,
    check_at_least,
    check_choice,
    check_positive,
    check_range,
    field,
)
from gzone.studies.icml._common import LENET5_CIFAR10, LENET300_FASHION, grid
from gzone.studies.icml._common import grid_claims as gc


@dataclasses.dataclass(frozen=True)
class Config(grid.GridConfig):
    """Full-batch training of α-scaled networks over an (α, η0, seed) grid."""

    alpha_min: float = field(0.01, "smallest alpha of the log grid")
    alpha_max: float = field(100.0, "largest alpha of the log grid")
    num_alphas: int = field(7, "alphas on the log grid")
    extra_alphas: tuple[float, ...] = field((), "alphas added to the log grid, e.g. 1.2,1.4 "
                                                 "(resolution where an edge lies)")
    lr0_min: float = field(0.003, "smallest base learning rate lr0")
    lr0_max: float = field(3.0, "largest base learning rate lr0")
    num_lr0: int = field(5, "lr0 values on the log grid")
    labels: str = field("true", "true labels, or random ones drawn once / every step",
                        training.LABELS)


_PAPER = {"n_train": None, "n_test": None, "num_alphas": 13, "alpha_min": 0.01, "alpha_max": 100.0,
          "num_lr0": 10, "lr0_min": 0.001, "lr0_max": 3.0, "steps": 20000, "log_every": 100}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (32, 16), "n_train": 200, "n_test": 100, "zone_dim": 10, "num_alphas": 3, "num_lr0": 2,
             "alpha_min": 0.1, "alpha_max": 10.0, "lr0_min": 0.03, "lr0_max": 0.3, "steps": 40,
             "log_every": 20, "zone_samples": 200, "batch_size": 4},
    "default": {},
    "cpu": {**LENET300_FASHION, "n_train": 1000, "n_test": 1000, "num_alphas": 7,
            "alpha_min": 0.01, "alpha_max": 100.0, "num_lr0": 5, "lr0_min": 0.003, "lr0_max": 1.0,
            "steps": 1000, "log_every": 100, "zone_samples": 1000},
    "paper": {**LENET300_FASHION, **_PAPER, "batch_size": None},  # batches from memory
    "fashion-cpu": {**LENET300_FASHION, "n_train": 1000, "n_test": 1000, "num_alphas": 7,
                    "alpha_min": 0.01, "alpha_max": 100.0, "num_lr0": 5, "lr0_min": 0.003,
                    "lr0_max": 1.0, "steps": 1000, "log_every": 100, "zone_samples": 1000},
    "lenet300-fashion": {**LENET300_FASHION, **_PAPER, "batch_size": None},
    # Sec. 5: LeNet-5 is untrainable for alpha > 1.8; the log grid's alphas next to 1 are 1 and
    # 2.15, so alphas in between locate that edge (resolution added, not a tuned grid)
    "lenet5-cifar10": {**LENET5_CIFAR10, **_PAPER, "batch_size": None,
                       "extra_alphas": (1.2, 1.4, 1.6, 1.8, 2.0)},
    # the same edge at CPU cost (`gzone reproduce --scale cpu` runs it beside `cpu`): 500 CIFAR-10
    # images, alpha 0.5 ... 2.2 around the edge, 400 full-batch steps
    "lenet5-cifar10-cpu": {**LENET5_CIFAR10, "n_train": 500, "n_test": 500, "num_alphas": 3,
                           "alpha_min": 0.5, "alpha_max": 2.0, "extra_alphas": (1.4, 1.8, 2.1),
                           "num_lr0": 3, "lr0_min": 0.03, "lr0_max": 0.3, "steps": 400,
                           "log_every": 50, "zone_samples": 500, "batch_size": 6},
}


def validate(config: Config) -> None:
    grid.validate_grid(config)
    grid.validate_lr0_grid(config)
    check_choice(config, "labels", training.LABELS)
    check_positive(config, "alpha_min", "alpha_max")
    check_range(config, "alpha_min", "alpha_max")
    check_at_least(config, "num_alphas")
    if config.extra_alphas:
        check_alphas(config, "extra_alphas")


def alphas(config: Config) -> list[float]:
    """The log grid of α with ``extra_alphas`` added, ascending."""
    grid_alphas = np.geomspace(config.alpha_min, config.alpha_max, config.num_alphas).tolist()
    return sorted({*grid_alphas, *(float(a) for a in config.extra_alphas)})


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    return grid.grid_points(config, alphas(config), grid.lr0_grid(config))


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return grid.rows(records)


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """Fig. 8 (heat maps with the zone strip) and the zero-logit fraction against the step
    (``<path_stem>-zero-logits``)."""
    from gzone.studies.icml._common import grid_figures

    return [grid_figures.fig8_figure(records, title=title, path_stem=path_stem),
            grid_figures.fig12_right_figure(
                records, title=title, path_stem=None if path_stem is None else f"{path_stem}-zero-logits")]


STUDY = Study(
    name="icml/trainability", paper=ICML, reproduces="Fig. 8 (and Fig. 12 right's panel)",
    title="full-batch GD over (alpha, lr0): trainability, zero logits, eta*||H|| and the zone",
    config=Config, presets=PRESETS, validate=validate, prepare=grid.prepare, points=points,
    measure=grid.measure, summarize=summarize, figure=figure,
    done={"zone": ("alpha", "seed"), "run": ("alpha", "lr0", "seed")},
    chunks=grid.chunks, work=grid.work, kinds=("zone", "run", "log"), legacy={"match": {"study": "trainability", "mode": "grid"}},
    extra_presets={"cpu": ("lenet5-cifar10-cpu",), "paper": ("lenet5-cifar10",)},
    unused=lambda config: grid.unused_fields(config) + (() if config.extra_alphas
                                                         else ("extra_alphas",)),
    claims=(
        Claim("staircase", "Fig. 8 left; App. E",
              "For alpha < 1 the largest base learning rate lr0 that trains grows linearly with "
              "alpha: a staircase between trainable and divergent runs.",
              gc.check_staircase, scales=gc.GRID_SCALES),
        Claim("trained-outside-zone", "Fig. 8; Sec. 5",
              "Networks initialised outside the Goldilocks zone can train fully: positive "
              "curvature is not needed to train.",
              gc.check_trained_outside_zone, scales=gc.GRID_SCALES),
        Claim("inadmissible-fails", "Fig. 8 right; Sec. 5",
              "Runs with eta*||H||_2 > 2 at initialisation (inadmissible) mostly fail to train.",
              gc.check_inadmissible_fails, scales=gc.GRID_SCALES),
        Claim("too-large-lr", "Fig. 8 middle; Sec. 5",
              "With too large a learning rate a network diverges or develops over 75 % "
              "zero-logit samples.",
              gc.check_too_large_lr, scales=gc.GRID_SCALES),
        gc.taxonomy_claim(),
        Claim("lenet5-untrainable", "Sec. 5; Fig. 8 bottom left",
              "LeNet-5 on CIFAR-10 does not perform above chance for any alpha > 1.8 and any "
              "learning rate.",
              gc.check_untrainable_edge, scales=("lenet5-cifar10", "lenet5-cifar10-cpu")),
    ),
    doc=__doc__)
