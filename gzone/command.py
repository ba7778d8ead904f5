"""The ``gzone`` command: one entry point for every study of the registry.

    gzone list                               the studies: name, paper, figure, presets
    gzone run NAME [--preset P] [--out DIR]  run (or resume) a study; every config field is an option
    gzone run NAME --help                    what the study measures, its commands and options
    gzone show NAME [--out DIR]              the summary table of a results directory
    gzone plot NAME [--out DIR]              draw its figure(s) into the directory
    gzone migrate NAME --out DIR             convert a directory written by gzone 0.1
    gzone reproduce --scale S --out DIR      every study at preset S, its claims checked, one report
    gzone diagnose --model F.py:FN --dataset D   your model against the Goldilocks zone (--help)

Results go to ``--out`` (default ``runs/<name>/<preset>``, or under ``$GZONE_RUNS``) as they are
computed; rerunning the same command resumes. ``--dry-run`` checks the options and the data and says what would run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gzone import cli, results
from gzone.cli import table, title  # noqa: F401  (gzone.command.table/title: public names)

USAGE = "gzone {list,run,show,plot,migrate,reproduce,diagnose} ... (gzone --help for more)"
INTERRUPTED = ("interrupted: rerun the same command to resume (every finished point is kept{where})")


def main(argv: Sequence[str] | None = None) -> int:
    """The ``gzone`` console script; returns the exit status (0, 2 for a refused command, 130
    when interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out: list[str] = []
    try:
        return _dispatch(argv, out)
    except KeyboardInterrupt:
        where = f" in {out[0]}" if out else ""
        print(INTERRUPTED.format(where=where), file=sys.stderr)
        return 130


def _dispatch(argv: list[str], out: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(help_text())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    commands = {"list": _list, "run": _run, "show": _show, "plot": _plot, "migrate": _migrate,
                "reproduce": _reproduce, "diagnose": _diagnose}
    if command not in commands:
        return cli.report(cli.UsageError(f"unknown command {command!r}; usage: {USAGE}"))
    spellings: dict[str, str] = {}
    try:
        return commands[command](rest, spellings, out)
    except cli.ERRORS as error:
        return cli.report(error, spellings)


def help_text() -> str:
    """The command's help: its usage (the module docstring) and examples on the first study."""
    from gzone import studies

    first = next(iter(studies.STUDIES))
    examples = [f"gzone run {first}", f"gzone run {first} --preset tiny --out runs/try",
                f"gzone run {first} --preset paper --dry-run --data-dir ../shared/data",
                f"gzone show {first} --out runs/try", f"gzone plot {first} --out runs/try",
                "gzone reproduce --scale tiny --out runs/reproduce-tiny",
                "gzone reproduce --scale cpu --out runs/reproduce-cpu --only 'icml/gradient-*' "
                "--data-dir ../shared/data"]
    return __doc__.strip() + "\n\nExamples:\n\n" + "\n".join(f"    {e}" for e in examples)


# ----------------------------------------------------------------------------- list


def _list(argv: list[str], spellings: dict, out: list) -> int:
    from gzone import studies

    cli.OneLineParser(prog="gzone list", description="List the studies.").parse_args(argv)
    rows = [{"name": s.name, "paper": s.paper, "reproduces": s.reproduces,
             "presets": ",".join(s.presets)} for s in studies.STUDIES.values()]
    print(table(rows))
    return 0


# ----------------------------------------------------------------------------- run


def _study(argv: list[str], command: str) -> tuple[Any, list[str]]:
    from gzone import studies

    if not argv or argv[0].startswith("-"):
        if argv and argv[0] in ("-h", "--help"):
            print(f"usage: gzone {command} NAME [options]; `gzone list` shows the names")
            raise SystemExit(0)
        raise cli.UsageError(f"name a study: gzone {command} NAME ...; `gzone list` shows them")
    return studies.get(argv[0]), argv[1:]


def _peek(argv: list[str], *options: str) -> argparse.Namespace:
    """The values of ``options`` in ``argv`` before the full parser exists."""
    parser = cli.OneLineParser(add_help=False)
    for option in options:
        parser.add_argument(option)
    return parser.parse_known_args(argv)[0]


def default_out(study: Any, preset: str) -> Path:
    """``$GZONE_RUNS/<paper>/<topic>/<preset>`` (``runs/...`` when ``$GZONE_RUNS`` is unset)."""
    from gzone import studies

    return studies.default_out(study.name, preset)


def run_parser(study: Any, preset: str) -> cli.OneLineParser:
    """The options of ``gzone run NAME``: --preset, every config field, the run options and the
    process options."""
    parser = cli.OneLineParser(
        prog=f"gzone run {study.name}", description=study.doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        unrecognized_hint=f"not an option of {study.name}; see gzone run {study.name} --help")
    parser.add_argument("--preset", choices=list(study.presets), default="default",
                        help="named setting (tiny: seconds; default: CPU minutes on the embedded "
                             "data; cpu: the paper's data at CPU sizes; paper: the paper's sizes); "
                             "explicit options override it")
    cli.add_config_options(parser, study.config, defaults=study.presets.get(preset))
    group = parser.add_argument_group("where and how")
    group.add_argument("--out", default=None,
                       help=f"results directory (default $GZONE_RUNS or runs, then "
                            f"{study.name}/<preset>)")
    group.add_argument("--data-dir", default=None,
                       help="folder with the dataset files (else $GZONE_DATA_DIR, then tfds)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument("--no-plot", action="store_true", help="do not draw the figure")
    group.add_argument("--show", action="store_true",
                       help="also show the figure in a window (else it is only written to files)")
    group.add_argument("--dry-run", action="store_true",
                       help="check the options and the data, say what would run, compute nothing")
    procs = parser.add_argument_group(
        "several processes (each runs its slice into OUT/process-I-of-N; no coordinator: "
        "processes never wait on each other; default: $SLURM_PROCID/$SLURM_NTASKS or "
        "$OMPI_COMM_WORLD_RANK/$OMPI_COMM_WORLD_SIZE when set)")
    procs.add_argument("--num-processes", type=int, default=None, help="number of processes")
    procs.add_argument("--process-id", type=int, default=None, help="this process's index")
    return parser


def build(study: Any, argv: list[str], spellings: dict) -> tuple[argparse.Namespace, Any]:
    """Parse ``gzone run NAME`` options into (args, config); switch JAX to 64-bit iff the config
    asks for float64 (before any JAX array exists)."""
    from gzone import engine

    preset = _peek(argv, "--preset").preset or "default"
    if preset not in study.presets:
        raise cli.UsageError(f"{study.name} has no preset {preset!r}; choose one of "
                             f"{', '.join(study.presets)}")
    args = run_parser(study, preset).parse_args(argv)
    values, spelled = cli.config_overrides(args, study.config)
    spellings.update(spelled)
    config = engine.make_config(study, args.preset, **values)
    cli.process_options(args)
    cli.apply_dtype(config)
    return args, config


def _run(argv: list[str], spellings: dict, out_holder: list) -> int:
    from gzone import engine

    study, rest = _study(argv, "run")
    args, config = build(study, rest, spellings)
    out = Path(args.out) if args.out else default_out(study, args.preset)
    if args.dry_run:
        engine.check(study, config)
        setup = study.prepare(config, args.data_dir)
        points = study.points(config, setup)
        print(f"{study.name} ({args.preset}): {len(points)} points into {out}; the options are valid "
              "and the data is there (--dry-run: nothing computed)")
        return 0
    out_holder.append(str(out))
    progress = None if args.no_progress else cli.progress_bar(study.name, "pt")
    records = engine.run(study, config, out, data_dir=args.data_dir, progress=progress,
                         process_index=args.process_id, process_count=args.num_processes)
    if (args.num_processes or 1) > 1:
        print(f"process {args.process_id} of {args.num_processes}: its slice is done; "
              f"{len(records)} records of all slices so far in {out}")
    report(study, records, out)
    if not args.no_plot:
        draw(study, records, out, title(study, config, args.preset), args.show)
    return 0


def report(study: Any, records: list[dict], out: Path) -> None:
    """Print where the records are, the summary table and a note on flagged records."""
    print(f"{len(records)} records in {out}")
    rows = study.summarize(records)
    if rows:
        print(table(rows))
    flagged = sum(bool(r.get("flags")) for r in records)
    if flagged:
        print(f"note: {flagged} records carry flags (non-finite or undefined values stored as "
              "null, divergence ...); see their 'flags'")


def draw(study: Any, records: list[dict], out: Path, text: str, show: bool) -> None:
    """Draw the study's figure(s) into ``out/<topic>*.png`` and ``.pdf``."""
    cli.use_backend(show)
    import matplotlib.pyplot as plt

    figures = study.figure(records, title=text, path_stem=out / study.topic)
    figures = figures if isinstance(figures, list) else [figures]
    for fig in figures:
        for path in getattr(fig, "gzone_saved", []):
            if str(path).endswith(".png"):
                print(f"figure: {path}")
    if show:
        plt.show()
    for fig in figures:
        plt.close(fig)


# ----------------------------------------------------------------------------- show, plot


def _directory(study: Any, argv: list[str], command: str) -> tuple[argparse.Namespace, Path, list]:
    from gzone import engine

    parser = cli.OneLineParser(prog=f"gzone {command} {study.name}")
    parser.add_argument("--preset", default="default", help="the preset of the default --out")
    parser.add_argument("--out", default=None, help="results directory (default runs/NAME/PRESET)")
    if command == "plot":
        parser.add_argument("--show", action="store_true", help="also show the figure in a window")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else default_out(study, args.preset)
    records = engine.load(out)
    if not records:
        raise FileNotFoundError(f"no records of {study.name} in {out}: run `gzone run {study.name} "
                                f"--out {out}` first")
    there = stored_study(out)
    if there is not None and there != study.name:
        raise ValueError(f"{out} holds results of {there}, not {study.name}")
    return args, out, records


def stored_study(out: Path) -> str | None:
    """The study named by ``out/config.json`` (or by its first process folder)."""
    for path in [out / results.CONFIG_FILE, *sorted(out.glob(f"process-*/{results.CONFIG_FILE}"))]:
        if path.exists():
            return json.loads(path.read_text()).get("study")
    return None


def _show(argv: list[str], spellings: dict, out: list) -> int:
    study, rest = _study(argv, "show")
    _, where, records = _directory(study, rest, "show")
    report(study, records, where)
    return 0


def _plot(argv: list[str], spellings: dict, out: list) -> int:
    study, rest = _study(argv, "plot")
    args, where, records = _directory(study, rest, "plot")
    stored = json.loads((where / results.CONFIG_FILE).read_text()) \
        if (where / results.CONFIG_FILE).exists() else {}
    draw(study, records, where, title(study, stored), args.show)
    return 0


def _migrate(argv: list[str], spellings: dict, out: list) -> int:
    from gzone.engine import migrate

    study, rest = _study(argv, "migrate")
    parser = cli.OneLineParser(prog=f"gzone migrate {study.name}")
    parser.add_argument("--out", required=True, help="the results directory written by gzone 0.1")
    args = parser.parse_args(rest)
    print(migrate.migrate(study, Path(args.out)))
    return 0


def _reproduce(argv: list[str], spellings: dict, out: list) -> int:
    from gzone import reproduce

    args = reproduce.parse(argv)
    if args.dry_run:
        reproduce.dry_run(args.scale, args.only, args.data_dir)
        return 0
    out.append(args.out)
    try:
        reproduce.reproduce(args.scale, args.out, only=args.only, runs=args.runs,
                            data_dir=args.data_dir, process_index=args.process_id,
                            process_count=args.num_processes, progress=not args.no_progress)
    except reproduce.StudiesFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _diagnose(argv: list[str], spellings: dict, out: list) -> int:
    from gzone import diagnosis

    return diagnosis.command(argv)


def shim(argv: Sequence[str], selectors: dict[str, str], *, default: str | None = None,
         option: str = "--study") -> int:
    """The documented scripts, as a few lines each: ``selectors`` maps a flag (``--alpha-grid``)
    or an ``option`` value (``--study fig3``) to a study; the rest of the command line goes to
    ``gzone run NAME`` (``--plot-only``: ``gzone plot NAME``)."""
    argv, name, command = list(argv), default, "run"
    for token in list(argv):
        if token in selectors:
            argv.remove(token)
            name = selectors[token]
    if option in argv:
        i = argv.index(option)
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if f"{option} {value}" not in selectors:
            choices = ", ".join(k.split()[-1] for k in selectors if k.startswith(option))
            return cli.report(cli.UsageError(f"unknown value {value!r} of {option}; choose one "
                                             f"of {choices}"))
        name = selectors[f"{option} {value}"]
        del argv[i:i + 2]
    if "--plot-only" in argv:
        argv.remove("--plot-only")
        argv = [a for a in argv if a not in ("--no-progress", "--no-plot")]
        command = "plot"
    if name is None:
        return cli.report(cli.UsageError(f"name what to run with {option}; see --help"))
    return main([command, name, *argv])

