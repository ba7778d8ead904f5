"""Every study at one scale, every claim checked, one report: ``gzone reproduce``.

    gzone reproduce --scale tiny --out runs/reproduce-tiny
    gzone reproduce --scale cpu --out runs/reproduce-cpu --data-dir ../shared/data
    gzone reproduce --scale cpu --out runs/reproduce-cpu --only 'fort/*,icml/*-sweep'
    gzone reproduce --scale paper --out R --process-id 0 --num-processes 4   (then once without)

Each selected study runs (or resumes: finished points are not recomputed) at the preset named by
the scale into ``<runs>/<paper>/<topic>/<scale>`` (``--runs``, default ``<out>/runs``), and at
the named presets its claims need beside it (``Study.extra_presets``: LeNet-5 on CIFAR-10 beside
the LeNet-300-100 trainability grid); then its
claims (:mod:`gzone.engine.claims`) are evaluated on its records and its figure is drawn into
``<out>/figures``. The run writes ``<out>/claims.jsonl`` (one record per claim),
``<out>/report.md`` and ``<out>/report.html`` (:mod:`gzone.report`), and keeps each study's
wall time in ``<out>/timing.json``. A later command with ``--only`` updates that report: the
studies it does not select stay in it, read from their finished results (nothing recomputed; an
unfinished one is left out, and one whose results cannot be read is named).

With ``--process-id I --num-processes N`` a process runs its slice of every study (points
``i ≡ I mod N``, into the studies' ``process-I-of-N`` folders; processes share nothing) and
writes no report; once all are done, the same command without them finds every point finished
and writes the report.
"""

from __future__ import annotations

import fnmatch
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gzone import cli, engine, precision, studies
from gzone.engine import claims as claims_lib

CLAIMS_FILE = "claims.jsonl"
TIMING_FILE = "timing.json"
FIGURES = "figures"


class StudiesFailed(RuntimeError):
    """Some studies of a reproduce run failed; the report holds the others."""


def jobs(chosen: list[Any], scale: str) -> list[tuple[Any, str]]:
    """(study, preset) pairs to run at ``scale``: each study at the preset named by the scale,
    then its ``extra_presets`` for that scale (claims that need another model or dataset)."""
    return [(s, preset) for s in chosen for preset in (scale, *s.extra_presets.get(scale, ()))]


def select(only: str | None) -> list[Any]:
    """The studies whose names match one of the comma-separated glob patterns ``only`` (all
    when None), in registry order; an error naming the studies when none match."""
    chosen = list(studies.STUDIES.values())
    if only:
        patterns = [p.strip().strip("'\"") for p in only.split(",") if p.strip()]
        chosen = [s for s in chosen if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]
        if not chosen:
            raise ValueError(f"--only {only!r} matches no study; `gzone list` shows them: "
                             f"{', '.join(studies.STUDIES)}")
    return chosen


def study_labels(config: Any) -> dict[str, str]:
    """The model and dataset a config runs (the claims' ``model`` and ``dataset`` fields)."""
    model, data = cli.model_and_data(cli.config_fields(config))
    return {"model": model or "-", "dataset": data or "-"}


def provenance() -> dict[str, Any]:
    """Versions, device and the float settings of this process (the report's provenance)."""
    from importlib import metadata

    import jax

    versions = {"python": platform.python_version()}
    for package in ("gzone", "jax", "jaxlib", "flax", "optax", "numpy", "scipy", "matplotlib"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "-"
    devices = jax.devices()
    return {"versions": versions, "platform": devices[0].platform,
            "device": devices[0].device_kind, "device_count": len(devices),
            "machine": f"{platform.machine()}, {platform.system()}",
            "x64": bool(jax.config.jax_enable_x64),
            "precision": precision.provenance()["precision"],
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _timing(out: Path) -> dict[str, Any]:
    path = out / TIMING_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def study_config(study: Any, preset: str, runs: Path) -> tuple[Any, Path]:
    """The config of ``study`` at ``preset`` (its dtype switched on) and its results folder."""
    config = engine.make_config(study, preset)
    cli.apply_dtype(config)
    return config, studies.default_out(study.name, preset, runs)


def run_study(study: Any, preset: str, runs: Path, *, data_dir: str | None,
              progress: Callable | None, process_index: int | None, process_count: int | None
              ) -> tuple[Any, list[dict[str, Any]], float, int]:
    """Run (resume) ``study`` at ``preset``: (config, records, wall seconds, new records)."""
    config, out = study_config(study, preset, runs)
    before = len(engine.load(out)) if out.exists() else 0
    start = time.perf_counter()
    records = engine.run(study, config, out, data_dir=data_dir, progress=progress,
                         process_index=process_index, process_count=process_count)
    return config, records, time.perf_counter() - start, len(records) - before


def draw_figures(study: Any, records: list[dict[str, Any]], folder: Path, title: str,
                 suffix: str = "") -> list[str]:
    """Draw ``study``'s figure(s) into ``folder/<paper>/<topic><suffix>*.png`` (and .pdf); the
    PNG paths, relative to ``folder.parent``."""
    cli.use_backend(False)
    import matplotlib.pyplot as plt

    paper, topic = study.name.split("/")
    stem = folder / paper / (topic + suffix)
    stem.parent.mkdir(parents=True, exist_ok=True)
    figures = study.figure(records, title=title, path_stem=stem)
    figures = figures if isinstance(figures, list) else [figures]
    saved = [Path(p) for fig in figures for p in getattr(fig, "gzone_saved", [])]
    for fig in figures:
        plt.close(fig)
    return [str(p.relative_to(folder.parent)) for p in saved if p.suffix == ".png"]


def read_study(study: Any, preset: str, runs: Path, *, data_dir: str | None
               ) -> tuple[Any, list[dict[str, Any]] | None]:
    """(config, records) of ``study`` at ``preset`` when every point of it has finished under
    ``runs``; records None when it has not (nothing is computed or written)."""
    config, out = study_config(study, preset, runs)
    if not out.exists() or engine.unfinished(study, config, out, data_dir=data_dir) != 0:
        return config, None
    return config, engine.load(out)


def study_section(study: Any, preset: str, scale: str, config: Any, records: list[dict[str, Any]],
                  out: Path, label: str, wall_s: float | None,
                  echo: Callable[[str], None]) -> dict[str, Any]:
    """The report's section of one study: its claims evaluated on ``records`` and its figure
    drawn into ``out/figures`` (a broken figure is reported, not fatal to the report)."""
    labels = study_labels(config)
    checked = [{**c, **labels, "paper": study.paper, "scale": scale, "preset": preset}
               for c in claims_lib.evaluate(study, records, preset)]
    section = {"study": study, "label": label, "preset": preset,
               "config": cli.config_fields(config), "claims": checked,
               "records": len(records), "wall_s": wall_s, "figures": [],
               "flagged": sum(bool(r.get("flags")) for r in records),
               "rows": study.summarize(records) if study.report_table else []}
    try:
        section["figures"] = draw_figures(study, records, out / FIGURES,
                                          cli.title(study, config, preset),
                                          "" if preset == scale else f"-{preset}")
    except Exception as error:
        section["figure_error"] = f"{type(error).__name__}: {error}"
        echo(f"note: the figure of {label} failed: {section['figure_error']}")
    return section


def dry_run(scale: str, only: str | None, data_dir: str | None,
            echo: Callable[[str], None] = print) -> int:
    """Validate and prepare every selected study at ``scale`` (data loaded, models built) and
    say how many points each has; nothing is computed or written. The number of points."""
    total = 0
    for study, preset in jobs(select(only), scale):
        config = engine.make_config(study, preset)
        cli.apply_dtype(config)
        engine.check(study, config)
        count = len(study.points(config, study.prepare(config, data_dir)))
        total += count
        echo(f"{study.name} ({preset}): {count} points")
    echo(f"{total} points in all; the presets are valid and the data is there (--dry-run: "
         "nothing computed)")
    return total


def reproduce(scale: str, out: str | Path, *, only: str | None = None,
              runs: str | Path | None = None, data_dir: str | None = None,
              process_index: int | None = None, process_count: int | None = None,
              progress: bool = True, echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run the selected studies at ``scale``, evaluate their claims, draw their figures and
    write the report (module docstring); the claim records (none for a process of several)."""
    from gzone import report

    if scale not in engine.PRESETS:
        raise ValueError(f"scale must be one of {', '.join(engine.PRESETS)}, got {scale!r}")
    if process_count is not None and not 0 <= (process_index or 0) < process_count:
        raise ValueError(f"--process-id must lie in 0..{process_count - 1}")
    chosen = select(only)
    out = Path(out)
    runs = Path(runs) if runs is not None else out / "runs"
    sliced = process_count is not None and process_count > 1
    timing = _timing(out)
    reported = set(timing)  # the studies an earlier command ran into this report
    sections, found, failed, unread = [], [], [], []
    todo = jobs(chosen, scale)
    selected = [(study.name, preset) for study, preset in todo]
    for study, preset in jobs(list(studies.STUDIES.values()), scale):
        label = study.name if preset == scale else f"{study.name} [{preset}]"
        if (study.name, preset) not in selected:
            # not selected (--only): kept in the report this folder already has, when finished
            if sliced or label not in reported:
                continue
            try:
                config, records = read_study(study, preset, runs, data_dir=data_dir)
            except Exception as error:
                unread.append(f"{label}: {type(error).__name__}: {error}")
                continue
            if records is None:
                continue
            note = "read from its finished results (not selected by --only)"
        else:
            position = f"[{selected.index((study.name, preset)) + 1}/{len(todo)}] {label}"
            echo(f"{position} ({preset})")
            bar = cli.progress_bar(position, "pt") if progress else None
            try:
                config, records, wall, new = run_study(
                    study, preset, runs, data_dir=data_dir, progress=bar,
                    process_index=process_index if sliced else 0,
                    process_count=process_count or 1)
            except Exception as error:  # one study's failure is reported; the others still run
                failed.append(f"{label}: {type(error).__name__}: {error}")
                echo(f"error: {failed[-1]}")
                continue
            if sliced:
                continue
            entry = timing.get(label, {"wall_s": 0.0})
            if new == len(records):  # a fresh results folder: earlier times were of another
                entry = {"wall_s": 0.0}
            if new or label not in timing:
                entry = {"wall_s": entry["wall_s"] + wall, "records": len(records)}
            timing[label] = entry
            out.mkdir(parents=True, exist_ok=True)
            (out / TIMING_FILE).write_text(json.dumps(timing, indent=1, sort_keys=True))
            note = None
        section = study_section(study, preset, scale, config, records, out, label,
                                timing.get(label, {}).get("wall_s"), echo)
        if note:
            section["note"] = note
        found += section["claims"]
        sections.append(section)
    if unread:
        echo("some finished studies could not be read into the report (not selected, so not run):")
        for line in unread:
            echo(f"  {line}")
    if failed:
        echo(f"{len(failed)} of {len(todo)} studies failed (their claims are not in the report):")
        for line in failed:
            echo(f"  {line}")
    if sliced:
        echo(f"process {process_index} of {process_count}: its slice of {len(chosen)} studies is "
             "done; once every process is, run the command without --process-id/--num-processes "
             "to write the report")
        return []
    with open(out / CLAIMS_FILE, "w") as handle:
        for record in found:
            handle.write(json.dumps(record, sort_keys=True, default=str) + "\n")
    meta = {"scale": scale, "only": only, "runs": str(runs), "failed": failed, "unread": unread,
            "provenance": provenance()}
    (out / "report.md").write_text(report.markdown(sections, meta))
    (out / "report.html").write_text(report.html(sections, meta))
    counts = {v: sum(r["verdict"] == v for r in found) for v in claims_lib.VERDICTS}
    echo(f"{len(found)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
         + f"; report: {out / 'report.html'}")
    if failed:
        raise StudiesFailed(f"{len(failed)} studies failed (listed above and in the report); fix "
                           "them and rerun the same command: the others are not recomputed")
    return found


def parse(argv: Sequence[str]) -> Any:
    """The options of ``gzone reproduce``."""
    import argparse

    parser = cli.OneLineParser(prog="gzone reproduce", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", required=True, choices=list(engine.PRESETS),
                        help="the preset every study runs at (tiny: minutes; default: the "
                             "embedded data, under an hour; cpu: the papers' data and models at "
                             "CPU sizes, under 2 h on 2 cores; paper: the papers' settings, GPU)")
    parser.add_argument("--out", required=True, help="folder of the report, claims and figures")
    parser.add_argument("--only", default=None,
                        help="comma-separated glob patterns of study names, e.g. 'icml/*-sweep,fort/*'")
    parser.add_argument("--runs", default=None,
                        help="root of the studies' results folders (default OUT/runs; e.g. "
                             "$GZONE_RUNS to reuse runs made with `gzone run`)")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the dataset files (else $GZONE_DATA_DIR, then tfds)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--dry-run", action="store_true",
                        help="check every selected study's preset and data, say what would run, "
                             "compute nothing")
    parser.add_argument("--num-processes", type=int, default=None,
                        help="number of processes sharing the run (each runs a slice; default: "
                             "$SLURM_NTASKS or $OMPI_COMM_WORLD_SIZE when set)")
    parser.add_argument("--process-id", type=int, default=None, help="this process's index")
    args = parser.parse_args(list(argv))
    cli.process_options(args)
    return args
