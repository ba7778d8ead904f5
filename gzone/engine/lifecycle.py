"""The life cycle of every study, written once: :func:`run` and :func:`load`.

``run(study, config, out)``:

1. check the config (field types, then the study's ``validate``) and ``prepare`` it (data loaded,
   model built, d ≤ P): a refused run has not touched ``out``;
2. lock ``out`` (one writer at a time: a second is refused in one line, or with ``wait`` waits)
   and open it: a new directory is bound to the study's
   identity (its name and config minus growable fields), an existing one must hold the same
   identity or no records (:func:`gzone.results.open_results`);
3. the points still to do: the study's points minus the finished ones (in any folder of ``out``:
   a rerun with another process count repeats nothing), this process's slice of each kind (points ``i ≡ process_index mod process_count``; records then go to
   ``out/process-<i>-of-<n>``);
4. the chunks, each measured by ``study.measure`` and its records appended atomically as they
   come; progress in the study's units of work; a chunk's checkpoint folder is removed once its
   records are written (and stale ones, of chunks finished or changed since, at the start).

An interruption loses at most the point (or the batch of runs since its last checkpoint) in
progress; rerunning the same command resumes without repeating a finished point.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gzone import results, sharding
from gzone.engine.config import check_types, identity
from gzone.engine.study import (
    Context,
    Point,
    Progress,
    Record,
    Study,
    Ticker,
    one_each,
    point_key,
    remove_checkpoints,
)

LOCK_FILE = ".lock"


def records_dir(out_dir: str | Path, process_index: int, process_count: int) -> Path:
    """Where a process writes: ``out_dir`` itself, or ``out_dir/process-<i>-of-<n>``."""
    out = Path(out_dir)
    return out if process_count == 1 else out / f"process-{process_index}-of-{process_count}"


def _unique(records: list[Record]) -> list[Record]:
    """``records`` without repeats (a record equal in every field to an earlier one: the same
    point's logs written by two slices, one interrupted, of different process counts)."""
    import json

    seen, out = set(), []
    for r in records:
        key = json.dumps(r, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def load(out_dir: str | Path) -> list[Record]:
    """All records of ``out_dir`` and of its ``process-*`` folders (a run split over processes),
    merged, each once."""
    out = Path(out_dir)
    found = results.load_records(out / results.RESULTS_FILE)
    for sub in sorted(out.glob("process-*-of-*")):
        found += results.load_records(sub / results.RESULTS_FILE)
    return _unique(found)


def records_elsewhere(out_dir: str | Path, here: Path | None,
                      wanted: dict[str, Any]) -> list[Record]:
    """The records of ``out_dir``'s other folders (itself and its ``process-*`` folders, ``here``
    excepted) that hold the configuration ``wanted``: points another process count finished."""
    out = Path(out_dir)
    found: list[Record] = []
    for folder in [out, *sorted(out.glob("process-*-of-*"))]:
        if folder != here and results.same_config(folder, wanted):
            found += results.load_records(folder / results.RESULTS_FILE)
    return found


def unfinished(study: Study, config: Any, out_dir: str | Path, *,
               data_dir: str | None = None) -> int | None:
    """How many points of ``study`` at ``config`` no folder of ``out_dir`` (itself or a
    ``process-*`` folder) has finished — read only: nothing is computed or written. None when no
    folder holds this configuration."""
    out = Path(out_dir)
    wanted = identity(study, config)
    if not any(results.same_config(f, wanted) for f in [out, *out.glob("process-*-of-*")]):
        return None
    check(study, config)
    setup = study.prepare(config, data_dir)
    done = study.finished_keys(config, records_elsewhere(out, None, wanted))
    return sum(point_key(p) not in done for p in study.points(config, setup))


def check(study: Study, config: Any) -> None:
    """The config is one of ``study`` (its dataclass), its fields have their types and the
    study's ``validate`` accepts it."""
    if not isinstance(config, study.config):
        raise TypeError(f"{study.name} takes a {study.config.__module__}.Config, "
                        f"got {type(config).__name__}")
    check_types(config)
    study.validate(config)


def process_slice(points: list[Point], index: int, count: int) -> list[int]:
    """The indices of this process's points: of each kind, every ``count``-th from ``index``
    (:func:`gzone.sharding.process_points`), in the order of ``points``."""
    by_kind: dict[Any, list[int]] = {}
    for i, p in enumerate(points):
        by_kind.setdefault(p.get("kind"), []).append(i)
    mine = set()
    for indices in by_kind.values():
        mine.update(indices[j] for j in sharding.process_points(len(indices), index, count))
    return sorted(mine)


class BusyError(ValueError):
    """Another process holds the lock of a records directory (a one-line error of the CLI)."""


@contextlib.contextmanager
def locked(out: Path, wait: bool = False) -> Iterator[None]:
    """Hold ``out/.lock`` exclusively (POSIX ``flock``, released when the process dies): a second
    process writing the same directory is refused in one line (:class:`BusyError`), or with
    ``wait`` waits for the first and then resumes from its records."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    with open(out / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            if not wait:
                raise BusyError(f"{out} is being written by {holder}; wait for it to finish, or "
                                f"give this run another --out (several processes: --process-id "
                                f"I --num-processes N, each its own slice)") from None
            print(f"note: {holder} is writing {out}; waiting for it to finish", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"gzone process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run(study: Study, config: Any, out_dir: str | Path, *, data_dir: str | None = None,
        progress: Progress | None = None, process_index: int | None = None,
        process_count: int | None = None, devices: Any = None, wait: bool = False
        ) -> list[Record]:
    """Run (or resume) ``study`` with ``config`` in ``out_dir`` (module docstring); all records
    of the directory. ``process_index`` / ``process_count`` (default: ``jax.process_index()`` /
    ``jax.process_count()``, else :func:`gzone.sharding.process_from_env`) pick this process's
    slice; ``devices`` (default: the local ones) shard a training study's batch of runs;
    ``progress(iterator, total)`` wraps a progress bar; ``wait``: wait for another process
    writing the same folder instead of refusing (:func:`locked`)."""
    check(study, config)
    setup = study.prepare(config, data_dir)
    points = list(study.points(config, setup))
    if process_index is None or process_count is None:
        process_index, process_count = sharding.process_slot()
    out = records_dir(out_dir, process_index, process_count)
    with locked(out, wait):
        wanted = identity(study, config)
        existing = _unique(results.open_results(out, wanted)
                           + records_elsewhere(out_dir, out, wanted))
        done = study.finished_keys(config, existing)
        index = {point_key(p): i for i, p in enumerate(points)}
        todo = [points[i] for i in process_slice(points, process_index, process_count)
                if point_key(points[i]) not in done]
        chunks = (study.chunks or one_each)(config, todo)
        ids = [f"{index[point_key(chunk[0])]:06d}" for chunk in chunks]
        remove_checkpoints(out, set(ids))
        work = study.work or (lambda config, point: 1)
        ticker = Ticker(progress, sum(work(config, p) for p in todo))
        ctx = Context(study, config, setup, out, existing, devices, ticker=ticker)
        try:
            for chunk, chunk_id in zip(chunks, ids):
                ctx.chunk_id, ctx.advanced = f"chunk-{chunk_id}", 0
                for records in study.measure(ctx, chunk) or ():
                    ctx.write(records)
                ctx.advance(max(sum(work(config, p) for p in chunk) - ctx.advanced, 0))
                remove_checkpoints(out, set(ids[ids.index(chunk_id) + 1:]))
        finally:
            ticker.close()
    return load(out_dir)

