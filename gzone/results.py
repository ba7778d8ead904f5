"""Append-only, resumable result records: one JSON object per line in ``<out>/results.jsonl``.

* ``<out>/config.json`` holds the configuration that produced the records (with the gzone and jax
  versions, and :func:`gzone.precision.provenance` — precision policy, devices, XLA flags — of the
  run that created it, as provenance); every run that opens the directory appends its own
  provenance to ``<out>/provenance.jsonl`` (a resumed run may use other devices); opening the directory with another configuration is refused while it
  holds records (a ``config.json`` with no records next to it binds nothing and is replaced).
* Records are appended and flushed as soon as a point is computed, so an interrupted sweep loses
  at most the point in progress. Each append is all-or-nothing: an append cut short (even after
  some of its lines reached the file) is rolled back on the next open, and a torn last line from
  any other writer is dropped.
* A *point* (e.g. one (α, T, seed)) is finished when all its records are present; a rerun skips
  finished points, so nothing is computed or written twice.
* Non-finite numbers are never written as numbers: they become ``null`` and the record names
  them in ``flags``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.jsonl"
CONFIG_FILE = "config.json"
PENDING_FILE = "results.jsonl.pending"
PROVENANCE_FILE = "provenance.jsonl"
PROVENANCE_KEYS = ("gzone_version", "jax_version", "provenance")


class ConfigMismatchError(ValueError):
    """The results directory was written by a different configuration.

    The message names the directory as the parameter ``out_dir`` (``{name}`` in its template);
    :meth:`render` spells it otherwise, e.g. as the scripts' flag ``--out``."""

    name = "out_dir"

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.render())

    def __reduce__(self):
        return type(self), (self.template,)

    def render(self, flag: Callable[[str], str] | None = None) -> str:
        """The message with ``out_dir`` spelled by ``flag`` (name -> spelling; None: as is)."""
        return self.template.replace("{name}", (flag or str)(self.name))


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def _provenance() -> dict[str, Any]:
    import jax

    import gzone
    from gzone import precision

    return {"gzone_version": gzone.__version__, "jax_version": jax.__version__,
            "provenance": precision.provenance()}


def _log_session(out: Path) -> None:
    """Append this run's provenance (and the time) to ``out/provenance.jsonl``."""
    import time

    line = {"time": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **_provenance()}
    with open(out / PROVENANCE_FILE, "a") as handle:
        handle.write(json.dumps(line, sort_keys=True) + "\n")


def open_results(out_dir: str | Path, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Prepare ``out_dir`` for ``config`` and return the records already there.

    Creates the directory and ``config.json`` on first use; raises :class:`ConfigMismatchError`
    (naming the differing keys) when the directory holds records of another configuration. A
    stored configuration without any records (no ``results.jsonl``, or one with no complete
    record, e.g. a run stopped before its first point) binds nothing: it is replaced.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / CONFIG_FILE
    wanted = _canonical(config)
    if config_path.exists():
        stored = json.loads(config_path.read_text())
        stored = {k: v for k, v in stored.items() if k not in PROVENANCE_KEYS}
        if stored != wanted and _holds_records(out):
            raise ConfigMismatchError(mismatch_message(out, stored, wanted))
        if stored != wanted:
            _write_config(config_path, wanted)
    else:
        _write_config(config_path, wanted)
    _roll_back_pending_write(out)
    _log_session(out)
    return load_records(out / RESULTS_FILE, repair=True)


def same_config(out_dir: str | Path, config: dict[str, Any]) -> bool:
    """Whether ``out_dir/config.json`` holds ``config`` (provenance aside)."""
    path = Path(out_dir) / CONFIG_FILE
    if not path.exists():
        return False
    stored = json.loads(path.read_text())
    return {k: v for k, v in stored.items() if k not in PROVENANCE_KEYS} == _canonical(config)


def mismatch_message(out: Path, stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    """Why ``out`` (holding records of ``stored``) refuses ``wanted``, in one line: another study,
    a directory of gzone 0.1 (to migrate), or at most three differing fields."""
    study, there = wanted.get("study"), stored.get("study")
    if "/" in str(study) and "/" not in str(there):
        return (f"{out} was written by gzone 0.1, before studies had names: convert it with "
                f"`gzone migrate {study} --out {out}` (its records are kept), or use a "
                f"different {{name}}")
    if there != study:
        return f"{out} holds results of {there}, not {study}; use a different {{name}} or remove {out}"
    differing = sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k))
    details = "; ".join(f"{k}: {stored.get(k)!r} there vs {wanted.get(k)!r} now"
                        for k in differing[:3])
    if len(differing) > 3:
        details += f"; and {len(differing) - 3} more"
    whose = f"{study} " if study is not None else ""
    return (f"{out} holds results of {whose}with another configuration ({details}); use a "
            f"different {{name}} or remove {out}")


def _write_config(config_path: Path, wanted: dict[str, Any]) -> None:
    staged = config_path.with_name(config_path.name + ".tmp")
    staged.write_text(json.dumps({**wanted, **_provenance()}, indent=2, sort_keys=True))
    os.replace(staged, config_path)


def _holds_records(out: Path) -> bool:
    """Whether ``out`` holds at least one complete record (after rolling back an append that did
    not complete)."""
    _roll_back_pending_write(out)
    return bool(load_records(out / RESULTS_FILE, repair=True))


def load_records(path: str | Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Records of a results file; a torn last line (interrupted write) is ignored, and with
    ``repair`` cut from the file so that later appends start on a clean line."""
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records, good_bytes = [], 0
    for i, line in enumerate(lines):
        if not line.strip():
            good_bytes += len(line) + 1
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1 and any(rest.strip() for rest in lines[i + 1 :]):
                raise ValueError(f"{path}: line {i + 1} is not valid JSON; the file is corrupted") from None
            break  # torn last line
        good_bytes += len(line) + 1
    if repair and good_bytes < len(raw):
        with open(path, "r+b") as handle:
            handle.truncate(min(good_bytes, len(raw)))
    return records


def _clean(value: Any, path: str, flags: list[str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        flags.append(f"nonfinite_{path}")
        return None
    if isinstance(value, dict):
        return {k: _clean(v, k, flags) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, path, flags) for v in value]
    return value


def sanitize(record: dict[str, Any]) -> dict[str, Any]:
    """Copy of ``record`` with non-finite floats replaced by ``null`` and named in ``flags``."""
    flags = list(record.get("flags", []))
    cleaned = {k: _clean(v, k, flags) for k, v in record.items() if k != "flags"}
    cleaned["flags"] = sorted(set(flags))
    return cleaned


def append_records(out_dir: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records (sanitised) as one all-or-nothing write, flushed to disk before returning.

    The write is bracketed by ``results.jsonl.pending`` (holding the file's length before it):
    written before, removed after the data is on disk. If the process dies in between, the next
    :func:`open_results` cuts the file back to that length, so a point whose records were only
    partly written is dropped whole and recomputed — never left half there, then duplicated.
    """
    out = Path(out_dir)
    path = out / RESULTS_FILE
    data = "".join(json.dumps(sanitize(r), sort_keys=True) + "\n" for r in records).encode()
    pending = out / PENDING_FILE
    staged = out / (PENDING_FILE + ".tmp")
    staged.write_text(str(path.stat().st_size if path.exists() else 0))
    os.replace(staged, pending)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    pending.unlink()


def _roll_back_pending_write(out: Path) -> None:
    """Cut ``results.jsonl`` back to its length before an append that did not complete."""
    pending = out / PENDING_FILE
    if not pending.exists():
        return
    start = int(pending.read_text() or 0)
    path = out / RESULTS_FILE
    if path.exists() and path.stat().st_size > start:
        with open(path, "r+b") as handle:
            handle.truncate(start)
    pending.unlink()


def point_key(record: dict[str, Any], fields: Sequence[str]) -> tuple:
    """The identity of the point a record belongs to, e.g. (α, T, seed, d)."""
    return tuple(record[f] for f in fields)


def finished_points(
    records: Iterable[dict[str, Any]], fields: Sequence[str], terms: Sequence[str]
) -> set[tuple]:
    """Points for which a record of every term in ``terms`` exists."""
    seen: dict[tuple, set[str]] = {}
    for record in records:
        seen.setdefault(point_key(record, fields), set()).add(record["term"])
    return {key for key, found in seen.items() if set(terms) <= found}
