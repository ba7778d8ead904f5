"""Spread an independent leading axis (grid points, seeds, initialisations) over devices and
processes.

* Devices: :func:`points_mesh` is a 1-D mesh (axis ``"points"``) over the local devices;
  :func:`shard_points` places every leaf's leading axis on it (``NamedSharding(mesh,
  P("points"))``), :func:`replicate` copies shared operands (the data) to every device. A jitted
  function of such arrays then runs SPMD: each device computes its slice of the points. The
  leading axis must be a multiple of the device count: :func:`pad_points` repeats the last point
  (its results are dropped by the caller).
* Processes: :func:`process_points` is the slice of a grid one process runs (points ``i`` with
  ``i % count == index``, so that each process gets a mix of the grid), given explicitly
  (``--process-id I --num-processes N``) or read from a cluster's launcher by
  :func:`process_slot` (``SLURM_PROCID``/``SLURM_NTASKS``, ``OMPI_COMM_WORLD_RANK``/
  ``OMPI_COMM_WORLD_SIZE``). Processes share no arrays and never wait on each other (no
  ``jax.distributed``, no barrier): each runs its slice on its own local devices and writes its
  own records; a process that dies takes nothing else down, and rerunning it resumes its slice.

On a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (set before JAX starts) gives N
host devices to test this with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "points"


def points_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"points"`` over ``devices`` (default: this process's devices)."""
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    return Mesh(np.asarray(devices), (AXIS,))


def pad_points(tree: Any, multiple: int) -> tuple[Any, int]:
    """``tree`` with its leading axis padded to a multiple of ``multiple`` by repeating the last
    point, and the original length."""
    size = int(jax.tree_util.tree_leaves(tree)[0].shape[0])
    extra = -size % multiple
    if extra == 0:
        return tree, size

    def pad(a):
        return np.concatenate([np.asarray(a), np.repeat(np.asarray(a)[-1:], extra, axis=0)])

    return jax.tree_util.tree_map(pad, tree), size


def shard_points(tree: Any, mesh: Mesh) -> Any:
    """Every leaf of ``tree`` with its leading axis split over the mesh's ``"points"`` axis."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(AXIS)))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every leaf of ``tree`` copied to every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


class Placement:
    """Where a vmapped chunk of independent points lives: a 1-D mesh of ``devices`` (default:
    this process's), the points' leading axis padded to a multiple of its width and sharded over
    it, shared operands (the data) replicated — plain device arrays on one device. The one helper
    every vmapped study uses (training batches, Fig. 6's initialisations ...); :meth:`trim`
    drops the padding from results."""

    def __init__(self, devices: Sequence[Any] | None = None) -> None:
        self.mesh = points_mesh(devices)
        self.width = int(self.mesh.devices.size)

    def points(self, tree: Any) -> Any:
        """``tree``'s leading axis padded to a multiple of the width and sharded over the mesh."""
        padded = pad_points(jax.device_get(tree), self.width)[0]
        return shard_points(padded, self.mesh) if self.width > 1 else jax.device_put(padded)

    def shared(self, tree: Any) -> Any:
        """``tree`` on every device (unchanged on one)."""
        return replicate(tree, self.mesh) if self.width > 1 and tree is not None else tree

    @staticmethod
    def trim(tree: Any, num: int) -> Any:
        """The first ``num`` points of every leaf, on the host (the padding dropped)."""
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[:num], jax.device_get(tree))


def process_points(num_points: int, index: int | None = None, count: int | None = None) -> np.ndarray:
    """The indices of the points of a grid of ``num_points`` that process ``index`` of ``count``
    runs (default: ``jax.process_index()`` of ``jax.process_count()``): ``index, index + count,
    ...``. Every point belongs to exactly one process."""
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
    if not (isinstance(count, (int, np.integer)) and count >= 1):
        raise ValueError(f"process count must be a positive integer, got {count!r}")
    if not (isinstance(index, (int, np.integer)) and 0 <= index < count):
        raise ValueError(f"process index must be in [0, {count}), got {index!r}")
    return np.arange(index, num_points, count)


#: (index variable, count variable) of the launchers whose process slots :func:`process_slot` reads
LAUNCHERS = (("SLURM_PROCID", "SLURM_NTASKS"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"))


def process_from_env(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """(index, count) of this process as a launcher set it (:data:`LAUNCHERS`: Slurm's ``srun``,
    Open MPI's ``mpirun``), or None when none did; ValueError for values that are not a slot."""
    environ = os.environ if environ is None else environ
    for index_var, count_var in LAUNCHERS:
        if index_var in environ and count_var in environ:
            try:
                index, count = int(environ[index_var]), int(environ[count_var])
            except ValueError:
                raise ValueError(f"{index_var}={environ[index_var]!r} / {count_var}="
                                 f"{environ[count_var]!r} are not process numbers") from None
            if not (count >= 1 and 0 <= index < count):
                raise ValueError(f"{index_var}={index} is not a process of {count_var}={count}")
            return index, count
    return None


def process_slot(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(index, count) of this process: a launcher's (:func:`process_from_env`), else JAX's
    (``jax.process_index()``, ``jax.process_count()``: (0, 1) unless ``jax.distributed`` runs)."""
    found = process_from_env(environ)
    return found if found is not None else (jax.process_index(), jax.process_count())
