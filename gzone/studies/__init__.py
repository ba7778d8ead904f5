"""The registry of studies: an explicit import list, one module per study, grouped by paper.

Each module declares ``STUDY`` (:class:`gzone.engine.Study`) once; its name ``<paper>/<topic>``
appears nowhere else in the library. :data:`STUDIES` maps the names to the studies in the order
of the papers; :func:`get` looks one up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gzone import engine
from gzone.engine import Study
from gzone.studies.beyond import (
    adam,
    inhomogeneous,
    init_quality,
    logit_normalization,
    normalization,
)
from gzone.studies.fort import (
    architectures,
    directions,
    hypersurface_training,
    init_selection,
    loss_radius,
    radius,
    radius_drift,
    stokes,
)
from gzone.studies.icml import (
    alpha_sweep,
    alpha_temperature,
    curves,
    dim_sweep,
    gamma_entropy,
    gradient_cosines,
    gradient_prior,
    gterm_prediction,
    lazy,
    many_inits,
    pre_collapse,
    probe,
    random_labels,
    temperature_sweep,
    trainability,
    uso,
    uso_retrain,
)

_MODULES = (
    alpha_sweep, alpha_temperature, temperature_sweep, dim_sweep,  # Fig. 1, 2, 4 left
    gterm_prediction, gamma_entropy, gradient_cosines, gradient_prior, many_inits,  # Sec. 4
    pre_collapse,  # App. D
    trainability, curves, random_labels,  # Sec. 5
    uso, uso_retrain, probe, lazy,  # App. E
    radius, directions, architectures, loss_radius, stokes,  # Fort & Scherlis Fig. 3-5, Eq. 4
    hypersurface_training, init_selection, radius_drift,  # Fort & Scherlis Fig. 2, 6, obs. 8
    normalization, inhomogeneous, logit_normalization, adam,  # beyond the papers: ICML Sec. 6's
    init_quality,  # open questions (issue 22)
)

STUDIES: dict[str, Study] = {module.STUDY.name: module.STUDY for module in _MODULES}
#: name -> the module that declares the study
MODULES = {module.STUDY.name: module for module in _MODULES}


def get(name: str) -> Study:
    """The study named ``name``; a one-line error listing the names otherwise."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; `gzone list` shows them: {', '.join(STUDIES)}")
    return STUDIES[name]


def default_out(name: str, preset: str, root: str | Path | None = None) -> Path:
    """Where a study's preset writes by default: ``<root>/<paper>/<topic>/<preset>``, ``root``
    defaulting to ``$GZONE_RUNS``, else ``runs``."""
    return Path(root or os.environ.get("GZONE_RUNS") or "runs") / name / preset


def run(name: str, preset: str = "default", *, root: str | Path | None = None,
        data_dir: str | None = None, progress: Any = False) -> tuple[Any, list[dict[str, Any]]]:
    """Run (or resume) study ``name`` at ``preset`` into :func:`default_out`: (config, records).
    The notebooks' entry point (the command line's is ``gzone run``); ``progress``: True for the
    command's progress bar, or a callable ``(iterator, total) -> iterator``. Another process
    writing the same folder (a notebook beside a command) is waited for, then resumed from."""
    study = get(name)
    config = engine.make_config(study, preset)
    out = default_out(name, preset, root)
    if progress is True:
        from gzone import cli
        progress = cli.progress_bar(study.name, "pt")
    return config, engine.run(study, config, out, data_dir=data_dir, progress=progress or None,
                              wait=True)
