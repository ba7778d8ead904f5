"""A study, declared once: :class:`Study`, the points it measures and the :class:`Context` its
``measure`` runs in.

A study module ``gzone/studies/<paper>/<topic>.py`` (``<paper>``: icml, fort or beyond) holds a config dataclass, its presets and
five functions, and declares ``STUDY = Study(...)`` at the bottom::

    validate(config)                      -> None   (ConfigError naming the field)
    prepare(config, data_dir)             -> setup  (data loaded, model built, d <= P checked)
    points(config, setup)                 -> [point, ...]
    measure(ctx, chunk)                   -> yields the records of each finished point
    summarize(records)                    -> [row, ...]  (a table: one dict per row)
    figure(records, *, title, path_stem)  -> figure(s), saved as <path_stem>.png / .pdf

A *point* is a dict of plain values — ``{"kind": "run", "alpha": 0.1, "lr0": 0.03, "seed": 0}``
— named after the record kind that completes it: the point is finished once a record of that
kind with the same values of the fields in ``done[kind]`` exists (or as the study's own
``finished`` says). The engine (:func:`gzone.engine.run`) owns everything else: validation, the
results directory and its identity, the points still to do, the process slice, chunks,
progress, atomic appends and checkpoint folders.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gzone import results
from gzone.engine.claims import Claim

Record = dict[str, Any]
Point = dict[str, Any]
PointKey = tuple
Progress = Callable[[Iterator, int], Iterator]

ICML = "Vysogorets et al., ICML 2024"
FORT = "Fort & Scherlis, AAAI 2019"
#: the studies of questions the papers leave open (ICML Sec. 6 and its 2025 follow-up)
BEYOND = "Beyond the papers (ICML Sec. 6's open questions)"
#: the first part of a study's name: which paper it reproduces, or ``beyond`` the papers
PAPERS = ("icml", "fort", "beyond")
#: the presets every study has: tiny (seconds: tests, notebooks), default (CPU minutes on the
#: embedded data), cpu (the paper's data and models at CPU-minutes sizes), paper (the paper's sizes)
PRESETS = ("tiny", "default", "cpu", "paper")


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value


def point_key(point: Mapping[str, Any]) -> PointKey:
    """The hashable identity of a point (its items, sorted; lists as tuples)."""
    return tuple(sorted((k, _hashable(v)) for k, v in point.items()))


@dataclasses.dataclass(frozen=True)
class Study:
    """One study of a paper: its name, what it reproduces, its config and presets, and the
    functions the engine calls (module docstring)."""

    name: str
    paper: str
    reproduces: str
    title: str
    config: type
    presets: Mapping[str, Mapping[str, Any]]
    validate: Callable[[Any], None]
    prepare: Callable[[Any, str | None], Any]
    points: Callable[[Any, Any], Sequence[Point]]
    measure: Callable[[Context, list[Point]], Iterable[list[Record]] | None]
    summarize: Callable[[list[Record]], list[dict[str, Any]]]
    figure: Callable[..., Any]
    #: record kind -> the fields that name its point (a point is finished once such a record exists)
    done: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    #: fields that may change in an existing results directory (a grid that may be extended)
    growable: tuple[str, ...] = ()
    #: config -> the fields it does not read in its setting (not part of the identity)
    unused: Callable[[Any], Sequence[str]] | None = None
    #: (config, records) -> the keys of the finished points, where ``done`` cannot say it
    finished: Callable[[Any, list[Record]], set[PointKey]] | None = None
    #: (config, todo points) -> chunks measured together (default: one point each)
    chunks: Callable[[Any, list[Point]], list[list[Point]]] | None = None
    #: (config, point) -> its units of progress (default 1; ``measure`` advances them itself)
    work: Callable[[Any, Point], int] | None = None
    #: every record kind it writes (default: the kinds of ``done``)
    kinds: tuple[str, ...] = ()
    #: what a gzone 0.1 config.json of this study holds: ``{"match": {field: value}, "rename":
    #: {old field: new field}}`` (:mod:`gzone.engine.migrate`); None: it cannot be migrated
    legacy: Mapping[str, Any] | None = None
    #: the paper's claims its summary can confirm or refute (:mod:`gzone.engine.claims`)
    claims: tuple[Claim, ...] = ()
    #: scale -> named presets ``gzone reproduce --scale <scale>`` also runs (a claim that needs
    #: another model or dataset than the scale's preset, e.g. LeNet-5 beside LeNet-300-100)
    extra_presets: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    #: the report shows the summary rows as a table (a study whose answer is its table)
    report_table: bool = False
    #: the study module's docstring: what it measures and its commands
    doc: str = ""

    def __post_init__(self) -> None:
        if not self.kinds:
            object.__setattr__(self, "kinds", tuple(self.done))
        unknown = [p for ps in self.extra_presets.values() for p in ps if p not in self.presets]
        if unknown:
            raise ValueError(f"{self.name}: extra_presets names unknown presets {unknown}")
        missing = [p for p in PRESETS if p not in self.presets]
        if missing:
            raise ValueError(f"{self.name} lacks the preset(s) {', '.join(missing)}")
        paper, _, topic = self.name.partition("/")
        if not topic or paper not in PAPERS:
            raise ValueError(f"a study is named <paper>/<topic> ({', '.join(PAPERS)}), got "
                             f"{self.name!r}")

    @property
    def topic(self) -> str:
        """The part of the name after the paper: ``<paper>/<topic>`` -> ``<topic>``."""
        return self.name.partition("/")[2]

    def finished_keys(self, config: Any, records: list[Record]) -> set[PointKey]:
        """The keys (:func:`point_key`) of the points that ``records`` finish."""
        if self.finished is not None:
            return self.finished(config, records)
        keys = set()
        for r in records:
            fields = self.done.get(r.get("kind"))
            if fields is not None:
                keys.add(point_key({"kind": r["kind"], **{f: r.get(f) for f in fields}}))
        return keys


# ----------------------------------------------------------------------------- chunking


def one_each(config: Any, points: list[Point]) -> list[list[Point]]:
    """Every point a chunk of its own (the default)."""
    return [[p] for p in points]


def batched(size: Callable[[Any], int | None], *,
            group: Callable[[Any, Point], Any] | None = None,
            kinds: Sequence[str] | None = None) -> Callable[[Any, list[Point]], list[list[Point]]]:
    """Chunks of consecutive points with the same ``group(config, point)`` (default: the same kind), at
    most ``size(config)`` each (None: no limit — the measure sizes its batches from the device's
    memory, e.g. :func:`gzone.training.train_grid` with ``batch_size=None``); points of a kind not
    in ``kinds`` (when given) stay alone. The shape of the training studies: a batch of runs is
    one vmapped program."""
    group = group or (lambda config, p: p.get("kind"))

    def chunks(config: Any, points: list[Point]) -> list[list[Point]]:
        out: list[list[Point]] = []
        limit = size(config) or len(points)
        for p in points:
            alone = kinds is not None and p.get("kind") not in kinds
            last = out[-1] if out else None
            if (not alone and last and len(last) < limit
                    and group(config, last[0]) == group(config, p)
                    and (kinds is None or last[0].get("kind") in kinds)):
                last.append(p)
            else:
                out.append([p])
        return out

    return chunks


# ----------------------------------------------------------------------------- context


class Ticker:
    """A progress bar over ``total`` units of work, advanced as they are done; a no-op without
    ``progress`` (a callable ``(iterator, total) -> iterator``, e.g. a tqdm bar)."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        # iter(): a tqdm bar is iterable, not an iterator. Its first item is taken at once (work
        # begins); each unit done takes the next, as a for loop over the bar would.
        self.bar: Iterator | None = (None if progress is None
                                     else iter(progress(iter(range(total)), total)))
        self.left = total
        if self.bar is not None and total > 0:
            next(self.bar, None)

    def advance(self, count: int) -> None:
        for _ in range(min(count, self.left) if self.bar is not None else 0):
            next(self.bar, None)
        self.left -= count

    def close(self) -> None:
        self.advance(max(self.left, 0))
        if self.bar is not None:
            getattr(self.bar, "close", lambda: None)()


@dataclasses.dataclass
class Context:
    """What ``measure`` works with: the study, its config and setup, the results directory, the
    records already written (``existing``: in this folder and in every other slice folder of the
    same configuration, each once), the local devices, and a ``state`` dict that lives across chunks
    (per-seed θ0 and bases, data laid out once ...). Its methods are the engine's: ``write``
    appends records atomically, ``advance`` moves the progress bar, ``checkpoint`` names the
    chunk's checkpoint folder (removed by the engine once the chunk is done)."""

    study: Study
    config: Any
    setup: Any
    out: Path
    existing: list[Record]
    devices: Any = None
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    ticker: Ticker = dataclasses.field(default_factory=lambda: Ticker(None, 0))
    chunk_id: str = ""
    advanced: int = 0

    def write(self, records: Iterable[Record]) -> None:
        """Append ``records`` (tagged with the study's name) as one all-or-nothing write."""
        batch = []
        for r in records:
            if "kind" not in r:
                raise ValueError(f"{self.study.name}: a record without a kind: {sorted(r)}")
            batch.append({"study": self.study.name, **r})
        if batch:
            results.append_records(self.out, batch)

    def advance(self, count: int = 1) -> None:
        """Move the progress bar by ``count`` units of work."""
        self.ticker.advance(count)
        self.advanced += count

    def checkpoint(self, name: str = "") -> Path:
        """The checkpoint folder of this chunk (``<out>/checkpoints/chunk-<id>[-name]``), removed
        once the chunk's records are written; a rerun after an interruption finds it again."""
        return self.out / "checkpoints" / (self.chunk_id + (f"-{name}" if name else ""))

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """``state[key]``, made by ``make()`` on first use."""
        if key not in self.state:
            self.state[key] = make()
        return self.state[key]

    def log_writer(self, points: list[Point], fields: Sequence[str],
                   extra: Callable[[int], Mapping[str, Any]] | None = None) -> Callable:
        """An ``on_log`` for :func:`gzone.training.train_grid` that writes one ``log`` record per
        measured run of ``points`` (their fields but ``kind``, and ``fields`` of the logged row;
        ``extra(j)``: more fields of run j) — skipping (run, step) pairs already written by an
        interrupted attempt — and advances the progress bar by one per run."""
        labels = [{k: v for k, v in p.items() if k != "kind"} for p in points]
        names = tuple(labels[0]) if labels else ()
        done = {(point_key({k: r.get(k) for k in names}), r.get("step"))
                for r in self.existing if r.get("kind") == "log"}

        def on_log(step: int, row: Mapping[str, np.ndarray], ok: np.ndarray) -> None:
            new = []
            for j, label in enumerate(labels):
                key = (point_key(label), int(step))
                if ok[j] and key not in done:
                    values = {f: float(row[f][j]) for f in fields if f != "step"}
                    new.append({"kind": "log", **(extra(j) if extra else {}), **label,
                                **values, "step": int(step)})
                    done.add(key)
            self.write(new)
            self.advance(int(np.sum(ok)))

        return on_log


def remove_checkpoints(out: Path, keep: set[str]) -> None:
    """Remove the chunk checkpoint folders under ``out/checkpoints`` whose chunk is not in
    ``keep`` (chunks recorded since, or of a changed chunking)."""
    folder = out / "checkpoints"
    for path in folder.glob("chunk-*"):
        if path.name.split("-")[1] not in keep:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
