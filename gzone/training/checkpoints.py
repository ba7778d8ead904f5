"""Checkpoints of a batch of training runs (:mod:`gzone.training`), with orbax-checkpoint.

At the batch's checkpoint cadence (``checkpoint_every``) its state — parameters, optimizer state,
divergence flags (the leaves of its carry) and, when sharpness is measured, each point's
sharpness eigenvector — is saved synchronously and atomically, keeping only the latest. The
history is not part of it: its rows (and which points each log measured) are *appended* to
``history.jsonl`` beside the checkpoints, never rewritten, and a checkpoint records how many bytes
of that file are its own (a restore cuts the file back to them). A checkpoint holds
a :func:`fingerprint` of its runs; restoring one of other runs is refused in one line. Each
process uses a manager of its own (``active_processes={rank}``): the slices of a multi-process
grid checkpoint without waiting on each other. orbax is imported only when a checkpoint is used.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np


def fingerprint(settings: Any, params0: Any, lr: np.ndarray, temps: np.ndarray) -> dict:
    """What a checkpoint must match to be resumed: the run settings (a
    :class:`gzone.training.Settings`), the learning rates and temperatures, and a hash of the
    initial parameters."""
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(params0):
        digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    key = None if settings.key is None else np.asarray(jax.random.key_data(settings.key)).tolist()
    return {"optimizer": settings.optimizer, "labels": settings.labels, "uso": settings.uso, "steps": settings.steps,
            "log_every": settings.log_every, "sharpness": settings.sharpness,
            "sharpness_iters": settings.sharpness_iters,
            "sharpness_tol": settings.sharpness_tol, "key": key,
            "matmul_precision": settings.matmul_precision,
            "lr": [float(v) for v in lr], "temperature": [float(v) for v in temps],
            "params0_sha256": digest.hexdigest(),
            **({"preconditioned_sharpness": True} if getattr(settings, "preconditioned", False)
               else {})}


def manager(directory: str | os.PathLike) -> Any:
    """An orbax ``CheckpointManager`` keeping the latest checkpoint of ``directory``, saving
    synchronously (a save is complete, and atomic, when it returns) and local to this process (a
    process of a multi-process grid checkpoints its own slice, without barriers)."""
    import orbax.checkpoint as ocp

    index = jax.process_index()
    os.makedirs(directory, exist_ok=True)
    return ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, enable_async_checkpointing=False, create=False,
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                primary_host=index, active_processes={index})))


HISTORY_FILE = "history.jsonl"


def _append_history(directory: Path, history: list, logged: list, start: int,
                    fields: tuple[str, ...]) -> int:
    """Append rows ``start …`` of the history (and their ``logged`` masks) to ``history.jsonl``,
    flushed to disk; the file's size in bytes."""
    path = directory / HISTORY_FILE
    lines = "".join(json.dumps({"row": {f: history[i][f].tolist() for f in fields},
                                "logged": logged[i].tolist()}) + "\n"
                    for i in range(start, len(history)))
    with open(path, "a") as handle:
        handle.write(lines)
        handle.flush()
        os.fsync(handle.fileno())
    return path.stat().st_size


def _read_history(directory: Path, size: int, fields: tuple[str, ...]) -> tuple[list, list]:
    """The rows of ``history.jsonl`` within its first ``size`` bytes (the file is cut back to
    them: rows appended after the checkpoint are gone)."""
    path = directory / HISTORY_FILE
    with open(path, "r+b") as handle:
        handle.truncate(size)
        text = handle.read().decode()
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    history = [{f: np.asarray(e["row"][f], np.float64) for f in fields} for e in entries]
    return history, [np.asarray(e["logged"], bool) for e in entries]


def save(manager, step: int, carry, history, logged, vectors, has_vector, fingerprint,
         fields: tuple[str, ...], written: int) -> None:
    """Save one batch's state at ``step`` (synchronously: complete and atomic on return), after
    appending the history rows logged since the last save (``history[written:]``: the first
    ``written`` rows are in ``history.jsonl`` already)."""
    import orbax.checkpoint as ocp

    size = _append_history(Path(manager.directory), history, logged, written, fields)
    leaves = [np.asarray(a) for a in jax.tree_util.tree_leaves(jax.device_get(carry))]
    state = {"leaves": leaves, "has_vector": has_vector.astype(np.int8)}
    if np.size(vectors):  # sharpness measured: its eigenvectors (the warm starts)
        state["vectors"] = np.asarray(vectors)
    meta = {"step": step, "fingerprint": fingerprint, "history_rows": len(history),
            "history_bytes": size}
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               meta=ocp.args.JsonSave(meta)))
    manager.wait_until_finished()


def restore(manager, carry, vectors, fingerprint, directory, fields: tuple[str, ...]):
    """(step, carry, history, logged, vectors, has_vector) of the latest checkpoint, or None."""
    import orbax.checkpoint as ocp

    step = manager.latest_step()
    if step is None:
        (Path(manager.directory) / HISTORY_FILE).unlink(missing_ok=True)  # rows of no checkpoint
        return None
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    if meta["fingerprint"] != fingerprint:
        differing = sorted(k for k in {*fingerprint, *meta["fingerprint"]}
                           if meta["fingerprint"].get(k) != fingerprint.get(k))
        raise ValueError(f"checkpoint_dir {directory} holds a checkpoint of another run "
                         f"(differs in {', '.join(differing)}); remove it or choose another "
                         f"checkpoint_dir")
    leaves, treedef = jax.tree_util.tree_flatten(jax.device_get(carry))
    target = {"leaves": [np.asarray(a) for a in leaves],
              "has_vector": np.zeros(len(vectors), np.int8)}
    if np.size(vectors):
        target["vectors"] = np.asarray(vectors)
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    state = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract)))["state"]
    restored = jax.tree_util.tree_unflatten(treedef, [np.asarray(a) for a in state["leaves"]])
    history, logged = _read_history(Path(manager.directory), meta["history_bytes"], fields)
    return (meta["step"], restored, history, logged, np.asarray(state.get("vectors", vectors)),
            np.asarray(state["has_vector"]).astype(bool))
