"""ICML Sec. 5, Fig. 8: does the Goldilocks zone predict trainability?

α-scaled homogeneous networks trained by full-batch gradient descent at η = η0·α^(2−L) over a
grid of (α, η0, seed) (:mod:`gzone.studies.icml._common.grid`): heat maps of the best train
accuracy, the largest parameter norm (zero-logit and diverged runs marked) and η·‖H‖₂ at
initialisation (inadmissible above 2), with the zone's α columns (‖G‖₂ > ‖H-term‖₂ at
initialisation) outlined; and the zero-logit fraction against the step (Fig. 12 right's panel).

    gzone run icml/trainability
    gzone run icml/trainability --labels random-per-step
    gzone run icml/trainability --preset cpu --data-dir ../shared/data
    gzone run icml/trainability --preset paper --coordinator host0:1234 --num-processes 4 --process-id 0
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gzone import training
from gzone.engine import ICML, Study
from gzone.engine.config import check_at_least, check_choice, check_positive, check_range, field
from gzone.studies.icml._common import LENET5_CIFAR10, LENET300_FASHION, grid


@dataclasses.dataclass(frozen=True)
class Config(grid.GridConfig):
    """Full-batch training of α-scaled networks over an (α, η0, seed) grid."""

    alpha_min: float = field(0.01, "smallest alpha of the log grid")
    alpha_max: float = field(100.0, "largest alpha of the log grid")
    num_alphas: int = field(7, "alphas on the log grid")
    lr0_min: float = field(0.003, "smallest base learning rate lr0")
    lr0_max: float = field(3.0, "largest base learning rate lr0")
    num_lr0: int = field(5, "lr0 values on the log grid")
    labels: str = field("true", "true labels, or random ones drawn once / every step",
                        training.LABELS)


_PAPER = {"n_train": None, "n_test": None, "num_alphas": 13, "alpha_min": 0.01, "alpha_max": 100.0,
          "num_lr0": 10, "lr0_min": 0.001, "lr0_max": 3.0, "steps": 20000, "log_every": 100}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (32, 16), "n_train": 200, "n_test": 100, "num_alphas": 3, "num_lr0": 2,
             "alpha_min": 0.1, "alpha_max": 10.0, "lr0_min": 0.03, "lr0_max": 0.3, "steps": 40,
             "log_every": 20, "zone_samples": 200, "batch_size": 4},
    "default": {},
    "cpu": {**LENET300_FASHION, "n_train": 1000, "n_test": 1000, "num_alphas": 7,
            "alpha_min": 0.01, "alpha_max": 100.0, "num_lr0": 5, "lr0_min": 0.003, "lr0_max": 1.0,
            "steps": 1000, "log_every": 100, "zone_samples": 1000},
    "paper": {**LENET300_FASHION, **_PAPER, "batch_size": 16},
    "fashion-cpu": {**LENET300_FASHION, "n_train": 1000, "n_test": 1000, "num_alphas": 7,
                    "alpha_min": 0.01, "alpha_max": 100.0, "num_lr0": 5, "lr0_min": 0.003,
                    "lr0_max": 1.0, "steps": 1000, "log_every": 100, "zone_samples": 1000},
    "lenet300-fashion": {**LENET300_FASHION, **_PAPER, "batch_size": 16},
    "lenet5-cifar10": {**LENET5_CIFAR10, **_PAPER, "batch_size": 8},
}


def validate(config: Config) -> None:
    grid.validate_grid(config)
    grid.validate_lr0_grid(config)
    check_choice(config, "labels", training.LABELS)
    check_positive(config, "alpha_min", "alpha_max")
    check_range(config, "alpha_min", "alpha_max")
    check_at_least(config, "num_alphas")


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    alphas = np.geomspace(config.alpha_min, config.alpha_max, config.num_alphas).tolist()
    return grid.grid_points(config, alphas, grid.lr0_grid(config))


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
    doc=__doc__)
