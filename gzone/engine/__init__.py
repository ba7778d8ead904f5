"""The study engine: one notion of a study and one life cycle for all of them.

* :mod:`gzone.engine.study` — :class:`Study` (a study declared once), points, :class:`Context`;
* :mod:`gzone.engine.lifecycle` — :func:`run` and :func:`load`, written once for every study;
* :mod:`gzone.engine.config` — config errors and checks, the shared config groups, presets,
  the identity of a results directory;
* :mod:`gzone.engine.setup` — model, data and keys (what every study sets up);
* :mod:`gzone.engine.summary` — small statistics the studies' summaries share;
* :mod:`gzone.engine.claims` — a paper's claims as data, their checks and verdicts.

The studies themselves live in :mod:`gzone.studies` (the registry); the ``gzone`` command in
:mod:`gzone.command`.
"""

from gzone.engine.claims import Claim, Finding
from gzone.engine.config import ConfigError, identity, make_config
from gzone.engine.lifecycle import check, load, run, unfinished
from gzone.engine.study import BEYOND, FORT, ICML, PRESETS, Context, Point, Record, Study

__all__ = ["BEYOND", "FORT", "ICML", "PRESETS", "Claim", "ConfigError", "Context", "Finding", "Point",
           "Record", "Study", "check", "identity", "load", "make_config", "run", "unfinished"]
