"""ICML Sec. 5, Fig. 12 right: zero logits under random labels.

The fraction of training samples whose logits are all zero, against the step, for true labels,
random labels drawn once and random labels redrawn at every step — the training grid of Fig. 8
(:mod:`gzone.studies.icml._common.grid`) at ``labels_alphas`` and one base
learning rate ``lr0``, once per label kind. The paper's panel is LeNet-5 on CIFAR-10.

    gzone run icml/random-labels
    gzone run icml/random-labels --preset paper --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gzone import training
from gzone.engine import ICML, ConfigError, Study
from gzone.engine.config import check_alphas, check_positive, field
from gzone.studies.icml._common import LENET5_CIFAR10, LENET300_FASHION, grid


@dataclasses.dataclass(frozen=True)
class Config(grid.GridConfig):
    """The training grid at a few α and one η0, once per kind of labels."""

    steps: int = field(1000, "full-batch steps per run")
    log_every: int = field(25, "steps between logs")
    sharpness: bool = field(False, "log the top Hessian eigenvalue (warm-started Lanczos) at every log")
    zone_samples: int | None = field(1000, "training samples of the zone's ||G||_2, ||H-term||_2 "
                                           "at init (none: all)")
    batch_size: int = field(16, "runs vmapped together (memory bound)")
    labels_alphas: tuple[float, ...] = field((1.0, 10.0), "alphas of the runs")
    lr0: float = field(0.1, "base learning rate lr0 (lr = lr0 * alpha^(2-L))")
    label_kinds: tuple[str, ...] = field(training.LABELS, "kinds of labels, each one of "
                                         "true, random-fixed (drawn once), random-per-step",
                                         training.LABELS)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (32, 16), "n_train": 200, "n_test": 100, "steps": 40, "log_every": 10,
             "labels_alphas": (1.0,), "batch_size": 4, "zone_samples": 200},
    "default": {},
    "cpu": {**LENET5_CIFAR10, "n_train": 1000, "n_test": 500, "steps": 500, "log_every": 25,
            "labels_alphas": (1.0, 2.0)},
    "paper": {**LENET5_CIFAR10, "n_train": None, "n_test": None, "steps": 20000, "log_every": 100,
              "labels_alphas": (1.0, 10.0), "batch_size": 8},
    "lenet300-fashion": {**LENET300_FASHION, "n_train": None, "n_test": None, "steps": 20000,
                         "log_every": 100, "labels_alphas": (1.0, 10.0), "batch_size": 8},
}


def validate(config: Config) -> None:
    grid.validate_grid(config)
    check_alphas(config, "labels_alphas")
    check_positive(config, "lr0")
    if not config.label_kinds or any(k not in training.LABELS for k in config.label_kinds):
        raise ConfigError("label_kinds", f"{{name}} must name some of {', '.join(training.LABELS)}, "
                                         f"got {config.label_kinds!r}")


def points(config: Config, setup: Any) -> list[dict[str, Any]]:
    return grid.grid_points(config, [float(a) for a in config.labels_alphas], [config.lr0],
                            labels=config.label_kinds)


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (labels, α): the largest zero-logit fraction, its step, and the final one."""
    return [{"labels": labels, "alpha": alpha, "lr0": lr0, "max_zero_logits": float(values.max()),
             "at_step": int(steps[values.argmax()]), "final_zero_logits": float(values[-1])}
            for labels, runs in grid.zero_logit_curves(records).items()
            for (alpha, lr0), (steps, values) in runs.items()]


def figure(records: list[dict[str, Any]], *, title: str | None = None, path_stem: Any = None):
    """The zero-logit fraction against the step, one panel per kind of labels."""
    from gzone.studies.icml._common import grid_figures

    return grid_figures.fig12_right_figure(records, title=title, path_stem=path_stem)


STUDY = Study(
    name="icml/random-labels", paper=ICML, reproduces="Fig. 12 right, Sec. 5",
    title="zero-logit samples against the step under true, fixed random and per-step random labels",
    config=Config, presets=PRESETS, validate=validate, prepare=grid.prepare, points=points,
    measure=grid.measure, summarize=summarize, figure=figure,
    done={"zone": ("alpha", "seed"), "run": ("alpha", "lr0", "seed", "labels")},
    chunks=grid.chunks, work=grid.work, kinds=("zone", "run", "log"),
    doc=__doc__)
