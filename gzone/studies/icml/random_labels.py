"""ICML Sec. 5, Fig. 12 right: zero logits under random labels.

The fraction of training samples whose logits are all zero, against the step, for true labels,
random labels drawn once and random labels redrawn at every step — the training grid of Fig. 8
(:mod:`gzone.studies.icml._common.grid`) at ``labels_alphas`` and one base
learning rate ``lr0``, once per label kind. The paper's panel is LeNet-5 on CIFAR-10: the
``cpu``, ``paper`` and ``lenet5-cifar10`` (= ``paper``: the full training set, 20,000 steps;
the paper does not state the panel's α or η0) presets.

    gzone run icml/random-labels
    gzone run icml/random-labels --preset lenet5-cifar10 --data-dir ../shared/data
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gzone import training
from gzone.engine import ICML, Claim, ConfigError, Finding, Study
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
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
    batch_size: int | None = field(16, "runs vmapped together (none: as many as the device's memory holds)")
    labels_alphas: tuple[float, ...] = field((1.0, 10.0), "alphas of the runs")
    lr0: float = field(0.1, "base learning rate lr0 (lr = lr0 * alpha^(2-L))")
    label_kinds: tuple[str, ...] = field(training.LABELS, "kinds of labels, each one of "
                                         "true, random-fixed (drawn once), random-per-step",
                                         training.LABELS)


#: Fig. 12 right: LeNet-5 on CIFAR-10 at the paper's settings (Sec. 5: full batch, 20,000 steps)
_LENET5 = {**LENET5_CIFAR10, "n_train": None, "n_test": None, "steps": 20000, "log_every": 100,
           "labels_alphas": (1.0, 10.0), "batch_size": 8}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (32, 16), "n_train": 200, "n_test": 100, "zone_dim": 10, "steps": 40, "log_every": 10,
             "labels_alphas": (1.0,), "batch_size": 4, "zone_samples": 200},
    "default": {},
    "cpu": {**LENET5_CIFAR10, "n_train": 1000, "n_test": 500, "steps": 500, "log_every": 25,
            "labels_alphas": (1.0, 2.0)},
    "paper": {**_LENET5, "batch_size": None},  # batches from the device's memory
    "lenet5-cifar10": _LENET5,
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
    """Per (labels, α): the zero-logit fraction at the first log, its largest value and that
    value's step, the final one and the last step."""
    return [{"labels": labels, "alpha": alpha, "lr0": lr0, "initial_zero_logits": float(values[0]),
             "max_zero_logits": float(values.max()), "at_step": int(steps[values.argmax()]),
             "final_zero_logits": float(values[-1]), "last_step": int(steps[-1])}
            for labels, runs in grid.zero_logit_curves(records).items()
            for (alpha, lr0), (steps, values) in runs.items()]


#: Sec. 5 is about networks that can memorise fixed random labels: the runs at α = 1 (every
#: preset has it; LeNet-5 is untrainable above α = 1.8)
REFERENCE_ALPHA = 1.0
#: zero logits "appear": at some log, at least this fraction of the samples has all-zero logits
APPEAR = 0.05
#: "this condition arises early in training": its peak within this fraction of the run
EARLY = 0.5
#: "and disappears": at the end at most this fraction of the peak is left
VANISH = 0.1
#: "it only gets worse" (labels redrawn every step): the end within this fraction of the peak
WORSE = 0.9


def _at(rows: list[dict[str, Any]], labels: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["labels"] == labels and r["alpha"] == REFERENCE_ALPHA), None)


def check_zero_logits(rows: list[dict[str, Any]]) -> Finding:
    """Sec. 5, Fig. 12 right, at α = 1: with fixed random labels zero logits appear (peak ≥
    ``APPEAR``) early (peak within the first ``EARLY`` of the run) and vanish (final ≤ ``VANISH``
    × peak); with labels redrawn every step they grow (final ≥ ``WORSE`` × peak and ≥ initial +
    ``APPEAR``) and end above the fixed labels' final fraction."""
    expected = (f"at alpha = {REFERENCE_ALPHA:g}: fixed random labels: peak >= {APPEAR} in the "
                f"first {EARLY:.0%} of the run, final <= {VANISH} x peak; per-step random labels: "
                f"final >= {WORSE} x peak, >= initial + {APPEAR} and above the fixed labels' final")
    fixed, per_step = _at(rows, "random-fixed"), _at(rows, "random-per-step")
    if fixed is None or per_step is None:
        return Finding(INCONCLUSIVE, {"runs": [f"{r['labels']} alpha={r['alpha']:g}" for r in rows]},
                       expected)
    keys = ("initial_zero_logits", "max_zero_logits", "at_step", "final_zero_logits", "last_step")
    measured = {"random-fixed": {k: fixed[k] for k in keys},
                "random-per-step": {k: per_step[k] for k in keys}}
    peak = fixed["max_zero_logits"]
    fixed_holds = (peak >= APPEAR and fixed["at_step"] <= EARLY * fixed["last_step"]
                   and fixed["final_zero_logits"] <= VANISH * peak)
    final = per_step["final_zero_logits"]
    grows = (final >= WORSE * per_step["max_zero_logits"]
             and final >= per_step["initial_zero_logits"] + APPEAR
             and final > fixed["final_zero_logits"])
    measured.update(fixed_appear_early_and_vanish=fixed_holds, per_step_grow=grows)
    return Finding(REPRODUCED if fixed_holds and grows else NOT_REPRODUCED, measured, expected)


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
    unused=grid.unused_fields,
    claims=(Claim("zero-logits-random-labels", "Sec. 5; Fig. 12 right",
                  "Trained on random labels a network develops zero logits early; they vanish "
                  "when the labels stay fixed (it memorises them) and grow when they are "
                  "redrawn every step.",
                  check_zero_logits, scales=("cpu", "paper", "lenet5-cifar10")),),
    doc=__doc__)
