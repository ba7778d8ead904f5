"""Inside the Goldilocks zone: the registry of the ICML paper's Sec. 4 (Fig. 3, 4 right, 5, 6) and
Appendix D (Fig. 10) studies.

One module per study, each with its config dataclass, ``validate``, ``run(config, out_dir,
data_dir=, progress=)`` (resumable JSONL records through :mod:`gzone.results`), ``summarize`` and
``RECORD_FIELDS``, all built on :mod:`gzone.experiments.base`:

=============  ==========================================  =================================
command line   study                                       module
=============  ==========================================  =================================
``fig3``       true G-term curvature vs Eq. (8) across α   :mod:`.gterm_prediction`
``fig4-right`` Γ_p^-2 vs softmax entropy                   :mod:`.gamma_entropy`
``fig5-left``  gradient cosines across datasets            :mod:`.gradient_cosines`
``fig5-right`` gradient norm vs ‖Q̂ − Q‖ (Eq. 9)            :mod:`.gradient_prior`
``fig6``       many Kaiming initialisations                :mod:`.many_inits`
``fig10``      pre-collapse: entropies, top eigenvector    :mod:`.pre_collapse`
=============  ==========================================  =================================

``STUDIES`` maps the command-line names to :class:`~gzone.experiments.base.Study` entries (config
class, named presets, run, summarize, figure — the figures live in :mod:`gzone.plots.inside` and
import matplotlib only when drawn). ``RECORD_FIELDS`` lists the required record keys per study
and record ``kind`` (every record also has ``study`` and ``flags``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gzone.experiments import (
    gamma_entropy,
    gradient_cosines,
    gradient_prior,
    gterm_prediction,
    many_inits,
    pre_collapse,
)
from gzone.experiments.base import ModelDataConfig, Progress, Record, Study


def _figure(name: str) -> Callable[..., Any]:
    """``gzone.plots.inside.<name>``, imported when first drawn (running a study needs no
    matplotlib)."""

    def draw(records: list[Record], **kwargs: Any) -> Any:
        from gzone.plots import inside as figures

        return getattr(figures, name)(records, **kwargs)

    draw.__name__ = draw.__qualname__ = name
    draw.__doc__ = f"The figure of the study: :func:`gzone.plots.inside.{name}`."
    return draw


def _study(module: Any, config: type, presets: dict[str, dict[str, Any]], figure: str) -> Study:
    return Study(module.NAME, config, presets, module.run, module.summarize, _figure(figure),
                 module.validate, module.RECORD_FIELDS)


_LENET300 = {"model": "lenet300", "dataset": "fashion_mnist"}
_LENET5 = {"model": "lenet5", "dataset": "cifar10"}
_TINY = {"widths": (32, 16), "n_samples": 200, "dim": 10}

_ENTRIES = (
    _study(gterm_prediction, gterm_prediction.Fig3Config, {
        "default": {},
        "tiny": dict(_TINY, seeds=2, num_points=5, alpha_min=0.1, alpha_max=3.0),
        "lenet300-fashion": dict(_LENET300, n_samples=10000, dim=50, seeds=3, num_points=21,
                                 alpha_min=1e-2, alpha_max=1e2),
        "lenet5-cifar10": dict(_LENET5, n_samples=3000, dim=50, seeds=3, num_points=21,
                               alpha_min=1e-2, alpha_max=1e2),
    }, "fig3_figure"),
    _study(gamma_entropy, gamma_entropy.Fig4RightConfig, {
        "default": {},
        "tiny": {"widths": (32, 16), "n_sets": 10, "num_points": 25},
        "gaussian": {"source": "gaussian"},
        "lenet300-fashion": dict(_LENET300),
        "lenet5-cifar10": dict(_LENET5),
    }, "fig4_right_figure"),
    _study(gradient_cosines, gradient_cosines.Fig5LeftConfig, {
        "default": {},
        "tiny": {"widths": (32, 16), "n_samples": 200, "inits": 3, "datasets": ("digits", "gaussian")},
        "lenet300-fashion": {"model": "lenet300", "datasets": ("fashion_mnist", "mnist", "gaussian"),
                             "n_samples": 10000, "inits": 5},
        "lenet5-cifar10": {"model": "lenet5", "datasets": ("cifar10", "svhn", "gaussian"),
                           "n_samples": 5000, "inits": 5},
    }, "fig5_left_figure"),
    _study(gradient_prior, gradient_prior.Fig5RightConfig, {
        "default": {},
        "tiny": {"subset_size": 100, "n_priors": 30},
        "lenet5-cifar10": dict(_LENET5, n_samples=None, subset_size=5000, n_priors=2000),
        "lenet300-fashion": dict(_LENET300, n_samples=None, subset_size=5000, n_priors=2000),
    }, "fig5_right_figure"),
    _study(many_inits, many_inits.Fig6Config, {
        "default": {},
        "tiny": {"widths": (16, 16, 16), "n_samples": 100, "dim": 10, "n_inits": 24, "seeds_per_chunk": 8},
        "lenet5-cifar10": dict(_LENET5, n_samples=3000, dim=50, n_inits=2000, seeds_per_chunk=8),
        "lenet300-fashion": dict(_LENET300, n_samples=3000, dim=50, n_inits=2000, seeds_per_chunk=8),
    }, "fig6_figure"),
    _study(pre_collapse, pre_collapse.Fig10Config, {
        "default": {},
        "tiny": {"widths": (32, 16), "n_samples": 100, "dim": 10, "num_points": 61, "curvature_points": 3,
                 "lanczos_iters": 15, "share_levels": (0.9,)},
        "lenet300-fashion": dict(_LENET300, n_samples=10000, dim=50, num_points=201,
                                 curvature_points=13, lanczos_iters=40),
    }, "fig10_figure"),
)

STUDIES: dict[str, Study] = {entry.name: entry for entry in _ENTRIES}
RECORD_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    name: entry.record_fields for name, entry in STUDIES.items()}


def study_of(config: ModelDataConfig) -> str:
    """The command-line name of a config's study."""
    for name, entry in STUDIES.items():
        if type(config) is entry.config:
            return name
    raise ValueError(f"{type(config).__name__} is not the config of a Section-4 study; "
                     f"studies: {', '.join(STUDIES)}")


def make_config(study: str, preset: str = "default", *, validate: bool = True,
                **overrides: Any) -> ModelDataConfig:
    """The config of ``study`` from a named preset plus field overrides (None values ignored),
    validated unless ``validate`` is False (the command line decides 64-bit mode from the config
    first; every study's ``run`` validates it again)."""
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; choose one of {', '.join(STUDIES)}")
    entry = STUDIES[study]
    if preset not in entry.presets:
        raise ValueError(f"unknown preset {preset!r} for {study}; choose one of "
                         f"{', '.join(entry.presets)}")
    fields = {f.name for f in dataclasses.fields(entry.config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{study} has no option(s) {', '.join(unknown)}; options: "
                         f"{', '.join(sorted(fields))}")
    values = {**entry.presets[preset], **{k: v for k, v in overrides.items() if v is not None}}
    config = entry.config(**values)
    if validate:
        entry.validate(config)
    return config


def run_study(config: ModelDataConfig, out_dir: str | Path, *, data_dir: str | None = None,
              progress: Progress | None = None) -> list[Record]:
    """Run (or resume) the study of ``config`` in ``out_dir``; all records of the directory."""
    return STUDIES[study_of(config)].run(config, out_dir, data_dir=data_dir, progress=progress)
