"""Convert a results directory written by gzone 0.1 (before studies had names) to the identity
and record tags of a named study (``gzone migrate NAME --out DIR``).

gzone 0.1 tied a directory to a config with an old study tag (``fig3``, ``fort``, ``outside`` ...,
or a ``mode`` for the zone sweeps) and wrote records with those tags. A study that can take such
a directory over declares what its config.json holds in ``Study.legacy``
(``{"match": {field: value}, "rename": {old field: new field}}``). Migration checks that match
and that every record kind is one the study writes, rebuilds the config from the stored fields
(the rest at their defaults), rewrites config.json and the records' ``study`` (and, for the zone
sweeps, ``kind``) tags, and keeps the originals as ``*.v1``. Checkpoints of runs in progress are
removed: those runs restart from their last finished point.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from gzone import results
from gzone.engine.config import identity
from gzone.engine.lifecycle import check
from gzone.engine.study import Study


def _kind(record: dict[str, Any]) -> str:
    if "kind" in record:
        return record["kind"]
    return "full" if record.get("space") == "full" else "subspace"


def _folders(out: Path) -> list[Path]:
    return [p for p in (out, *sorted(out.glob("process-*-of-*"))) if (p / results.CONFIG_FILE).exists()]


def old_config(study: Study, stored: dict[str, Any], where: Path) -> Any:
    """The study's config from a gzone 0.1 identity (refused unless ``study.legacy`` matches)."""
    legacy = study.legacy or {}
    if not legacy:
        raise ValueError(f"{study.name} cannot take over a gzone 0.1 directory; rerun it into a "
                         f"new --out")
    wanted = legacy.get("match", {})
    if any(stored.get(k) != v for k, v in wanted.items()):
        there = ", ".join(f"{k}={stored.get(k)!r}" for k in wanted)
        raise ValueError(f"{where} was not written by the gzone 0.1 form of {study.name} ({there}); "
                         f"migrate it as the study that wrote it (`gzone list`)")
    rename = legacy.get("rename", {})
    fields = {f.name for f in dataclasses.fields(study.config)}
    values = {}
    for key, value in stored.items():
        name = rename.get(key, key)
        if name in fields:
            values[name] = tuple(value) if isinstance(value, list) else value
    config = study.config(**values)
    check(study, config)
    return config


def migrate(study: Study, out: Path) -> str:
    """Migrate ``out`` (and its process folders) to ``study``; a one-line account."""
    folders = _folders(out)
    if not folders:
        raise FileNotFoundError(f"{out} holds no config.json: nothing to migrate")
    converted = 0
    for where in folders:
        stored = json.loads((where / results.CONFIG_FILE).read_text())
        stored = {k: v for k, v in stored.items() if k not in results.PROVENANCE_KEYS}
        if "/" in str(stored.get("study")):
            raise ValueError(f"{where} already belongs to {stored['study']}: nothing to migrate")
        config = old_config(study, stored, where)
        records = results.load_records(where / results.RESULTS_FILE)
        kinds = {_kind(r) for r in records}
        missing = {f for r in records for f in study.done.get(_kind(r), ()) if f not in r}
        if not kinds <= set(study.kinds) or missing:
            what = ", ".join(sorted(kinds - set(study.kinds))) or "differently shaped"
            raise ValueError(f"{where} holds {what} records, which {study.name} does not write: "
                             f"migrate it as the study that wrote it (`gzone list`)")
        for name in (results.CONFIG_FILE, results.RESULTS_FILE):
            if (where / name).exists():
                shutil.copy2(where / name, where / (name + ".v1"))
        lines = "".join(json.dumps({**r, "study": study.name, "kind": _kind(r)}, sort_keys=True) + "\n"
                        for r in records)
        staged = where / (results.RESULTS_FILE + ".tmp")
        staged.write_text(lines)
        os.replace(staged, where / results.RESULTS_FILE)
        (where / results.CONFIG_FILE).unlink()
        results.open_results(where, identity(study, config))
        shutil.rmtree(where / "checkpoints", ignore_errors=True)
        converted += len(records)
    return (f"migrated {out} to {study.name}: {converted} records kept (originals as *.v1); the "
            f"same options as before resume it: gzone run {study.name} --out {out} ...")
