"""The loop of a batch of training runs and the public entry points :func:`train` (one run) and
:func:`train_grid` (G runs vmapped over a leading axis, sharded over the local devices,
checkpointed at every log and resumed exactly): ICML Sec. 5, and the training engine of App. E and
of Fort & Scherlis' training studies. The static settings of a batch travel as one frozen
:class:`Settings`; its data, laid out once, as :class:`Data`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gzone import curvature, precision, sharding
from gzone.training import checkpoints
from gzone.training.metrics import (
    DIVERGENCE_FIELDS,
    HISTORY_FIELDS,
    PRECONDITIONED_FIELDS,
    SHARPNESS_FIELDS,
    grid_accuracy,
    grid_metrics,
)
from gzone.training.sharpness import grid_sharpness, preconditioned_sharpness
from gzone.training.step import (
    DRIVERS,
    LABELS,
    auto_driver,
    init_optimizer,
    labels_at,
    make_optimizer,
    run_block,
)


class TrainResult(NamedTuple):
    """Final parameters, the history (one entry per logged step, step 0 included; numpy arrays
    of equal length keyed by :data:`HISTORY_FIELDS`) and the first non-finite step (or None)."""

    params: Any
    history: dict[str, np.ndarray]
    diverged_at: int | None


class GridResult(NamedTuple):
    """A grid of G runs: final parameters (leading axis G), the history (each field (G, logs);
    entries after a run's divergence are NaN — not measured — and its ``diverged_at`` says so),
    and ``diverged_at`` (G,) with −1 for runs that did not diverge."""

    params: Any
    history: dict[str, np.ndarray]
    diverged_at: np.ndarray


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the runs of a batch share (everything but their parameters, lr and T)."""

    apply_fn: Callable
    optimizer: str
    labels: str
    uso: bool
    driver: str
    steps: int
    log_every: int
    sharpness: bool
    sharpness_iters: int
    sharpness_tol: float
    key: jax.Array | None
    matmul_precision: str = "float32"
    checkpoint_every: int | str | None = None
    #: log Adam's preconditioned sharpness (:func:`gzone.training.sharpness.preconditioned_sharpness`)
    preconditioned: bool = False

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields of a log's row."""
        return HISTORY_FIELDS + (PRECONDITIONED_FIELDS if self.preconditioned else ())

    @property
    def log_steps(self) -> list[int]:
        """The logged steps: every ``log_every``, 0 and the last included."""
        return sorted({*range(0, self.steps, self.log_every), self.steps})


def checkpoint_cadence(every: int | str | None) -> tuple[str, float]:
    """``checkpoint_every`` as (unit, amount): None → ("log", 1) (every log); an int or a string of
    digits N → ("steps", N) (a log at least N steps after the last checkpoint); ``"Ns"`` →
    ("seconds", N) (a log at least N seconds after it). ValueError otherwise."""
    if every is None:
        return "log", 1.0
    text = str(every).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s?)", text)
    if isinstance(every, bool) or match is None or float(match.group(1)) <= 0 or (
            not match.group(2) and "." in text):
        raise ValueError(f"checkpoint_every must be a positive number of steps (e.g. 500) or of "
                         f"seconds (e.g. '300s'), got {every!r}")
    return ("seconds" if match.group(2) else "steps"), float(match.group(1))


class _Cadence:
    """When a batch saves its checkpoint: :func:`checkpoint_cadence`, and always at its last log."""

    def __init__(self, every: int | str | None, step: int) -> None:
        self.unit, self.amount = checkpoint_cadence(every)
        self.step, self.time = step, time.monotonic()

    def due(self, step: int, last: bool) -> bool:
        if last or self.unit == "log" or (
                self.unit == "steps" and step - self.step >= self.amount) or (
                self.unit == "seconds" and time.monotonic() - self.time >= self.amount):
            self.step, self.time = step, time.monotonic()
            return True
        return False


def _check(lr, steps, log_every, optimizer, labels, key, driver) -> None:
    if not (isinstance(lr, (int, float, np.floating)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    for name, value in (("steps", steps), ("log_every", log_every)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if log_every > steps:
        raise ValueError(f"log_every={log_every} exceeds steps={steps}")
    make_optimizer(optimizer)
    if labels not in LABELS:
        raise ValueError(f"unknown labels {labels!r}; choose one of {', '.join(LABELS)}")
    if labels != "true" and key is None:
        raise ValueError(f"labels={labels!r} draws random labels: pass key")
    if driver not in DRIVERS:
        raise ValueError(f"unknown driver {driver!r}; choose one of {', '.join(DRIVERS)}")


class Data(NamedTuple):
    """The data of a batch of runs, laid out once."""

    batches: curvature.Batches  # training data, labels as trained on (random-fixed drawn here)
    test: curvature.Batches | None
    num_classes: int
    key_steps: jax.Array  # per-step random labels
    key_sharpness: jax.Array


#: vectors of P numbers a run holds besides its activations: parameters, θ0, gradient, update
#: (plus the optimizer's slots and, with sharpness, the Lanczos basis)
_STATE_VECTORS = 4


def point_bytes(params: Any, optimizer: str, sharpness: bool, sharpness_iters: int) -> int:
    """Device bytes one run of a batch holds besides the activations of its data chunk: its
    parameters, θ0, gradient and update, Adam's two moments, and (with sharpness) the Lanczos
    basis of ``sharpness_iters + 1`` vectors and the warm-start vector."""
    size = curvature.num_params(params) * jnp.dtype(curvature.params_dtype(params)).itemsize
    vectors = _STATE_VECTORS + (2 if optimizer == "adam" else 0)
    vectors += (sharpness_iters + 3) if sharpness else 0
    return size * vectors


def grid_layout(apply_fn: Callable, params: Any, x: jax.Array, num_points: int, *,
                optimizer: str, sharpness: bool, sharpness_iters: int, batch_size: int | None,
                chunk_size: int | None, devices: int = 1, budget: int | None = None
                ) -> tuple[int, int]:
    """(runs per batch, samples per chunk) of a grid of ``num_points`` runs (``params`` of one):
    given ones are kept; a missing batch size takes as many runs as half of the memory budget
    (:func:`gzone.curvature.device_memory_budget`, per device, times ``devices``) holds at
    :func:`point_bytes` each; a missing chunk size fits the activations of the runs a device
    vmaps into the other half (:func:`gzone.curvature.auto_chunk_size`)."""
    budget = curvature.device_memory_budget() if budget is None else budget
    if batch_size is None:
        each = point_bytes(params, optimizer, sharpness, sharpness_iters)
        batch_size = max(1, min(num_points, devices * (budget // 2) // max(each, 1)))
    if chunk_size is None:
        width = -(-min(batch_size, num_points) // devices)
        chunk_size = curvature.auto_chunk_size(apply_fn, params, x, width, budget // 2)
    return int(batch_size), int(chunk_size)


def prepare_data(apply_fn, params, x, y, x_test, y_test, chunk_size, labels, key) -> Data:
    """The data of a run (or of every run of a grid; ``params`` of one run), laid out once in
    chunks of ``chunk_size`` samples."""
    batches = curvature.prepare_batches(apply_fn, params, x, y, chunk_size)
    test = (None if x_test is None else
            curvature.prepare_batches(apply_fn, params, x_test, y_test, chunk_size))
    k = int(jax.eval_shape(apply_fn, params, batches.x[0]).shape[-1])
    key_labels, key_steps, key_sharp = jax.random.split(jax.random.key(0) if key is None else key, 3)
    if labels == "random-fixed":
        batches = batches._replace(
            y=jax.random.randint(key_labels, batches.y.shape, 0, k, batches.y.dtype))
    return Data(batches, test, k, key_steps, key_sharp)


class _Batch(NamedTuple):
    params: Any  # (G, ...) final parameters
    history: list[dict[str, np.ndarray]]  # one row per log: field -> (G,), NaN where not logged
    logged: list[np.ndarray]  # per log: (G,) bool, the point was measured there
    diverged_at: np.ndarray  # (G,), -1: did not diverge


class _Sharpness:
    """Each run's last sharpness eigenvector (on the devices, laid out like the points: (G, P),
    or (G, 0) when sharpness is off) and whether it has one: the warm start of its next estimate."""

    def __init__(self, vectors: np.ndarray, warm: np.ndarray, place: sharding.Placement) -> None:
        self.vectors, self.warm = place.points(vectors), place.points(warm)

    def host(self, num: int) -> tuple[np.ndarray, np.ndarray]:
        return sharding.Placement.trim((self.vectors, self.warm), num)


def _log_row(s: Settings, data: Data, carry: Any, p0: Any, temps_dev: Any, test: Any,
             num: int, step: int, sharp: _Sharpness) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The metrics of one log at ``carry``'s parameters (labels as trained on at ``step``): one
    compiled pass for the metrics, one for the test accuracy and, for the runs still going, the
    sharpness of all of them at once (:func:`gzone.training.sharpness.grid_sharpness`, which
    updates ``sharp``); read back, with the runs' divergence flags, in one host sync. Entries of
    stopped runs are NaN."""
    current = data.batches._replace(
        y=labels_at(s.labels, data.batches.y, data.key_steps, jnp.int32(step), data.num_classes))
    values = grid_metrics(s.apply_fn, carry[0], p0, current, temps_dev, s.uso)
    going = (carry[2] < 0) & jnp.all(jnp.stack([jnp.isfinite(values[f]) for f in DIVERGENCE_FIELDS]), 0)
    values["test_accuracy"] = (grid_accuracy(s.apply_fn, carry[0], test) if test is not None
                               else jnp.full(going.shape, jnp.nan))
    if s.sharpness:
        lam, residual, vectors, matvecs = grid_sharpness(
            s.apply_fn, carry[0], current, temps_dev, sharp.vectors, sharp.warm, going,
            jax.random.fold_in(data.key_sharpness, step), num_iters=s.sharpness_iters,
            tol=s.sharpness_tol, driver=s.driver)
        values.update(sharpness=lam, sharpness_residual=residual, sharpness_matvecs=matvecs)
        sharp.vectors = jnp.where(going[:, None], vectors.astype(sharp.vectors.dtype), sharp.vectors)
        sharp.warm = sharp.warm | going
    if s.preconditioned:
        values["preconditioned_sharpness"] = preconditioned_sharpness(
            s.apply_fn, carry[0], current, temps_dev, carry[1], going,
            jax.random.fold_in(jax.random.fold_in(data.key_sharpness, step), 1),
            num_iters=s.sharpness_iters, tol=s.sharpness_tol, driver=s.driver)
    values["going"], values["diverged"] = going, carry[2]
    host = jax.device_get(values)  # the log's one read from the devices
    row = {f: np.asarray(v, np.float64)[:num] for f, v in host.items()
           if f not in ("going", "diverged")}
    for f in SHARPNESS_FIELDS if not s.sharpness else ():
        row[f] = np.full(num, np.nan)
    stopped = ~np.asarray(host["going"])[:num]
    for f in row:
        row[f] = np.where(stopped, np.nan, row[f])
    return row, np.asarray(host["diverged"])[:num]


def _run_batch(s: Settings, data: Data, params0: Any, lr: np.ndarray, temps: np.ndarray, *,
               devices: Any = None, checkpoint_dir: str | os.PathLike | None = None,
               on_log: Callable[[int, dict[str, np.ndarray], np.ndarray], None] | None = None,
               ) -> _Batch:
    """G runs vmapped over the leading axis of ``params0`` / ``lr`` / ``temps`` (sharded over
    ``devices`` when there are several), resumed from ``checkpoint_dir`` when it holds a
    checkpoint of these runs and checkpointed there at the cadence of ``s.checkpoint_every``
    (and at the last log). A run whose loss or update is not finite (in a step, or at a log:
    :data:`DIVERGENCE_FIELDS`) is frozen and flagged."""
    num = len(lr)
    dtype = curvature.params_dtype(params0)
    opt = make_optimizer(s.optimizer)
    place = sharding.Placement(devices)
    batches, test = place.shared(data.batches), place.shared(data.test)
    p0, temps_dev = place.points(params0), place.points(jnp.asarray(temps, dtype))
    state = jax.vmap(lambda p, r: init_optimizer(s.optimizer, p, r))(params0, jnp.asarray(lr, dtype))
    carry = (params0, state, np.full((num,), -1, np.int32))
    size = curvature.num_params(jax.tree_util.tree_map(lambda a: a[0], params0)) if s.sharpness else 0
    vectors, warm = np.zeros((num, size), dtype), np.zeros(num, bool)
    history: list[dict[str, np.ndarray]] = []
    logged: list[np.ndarray] = []
    step, manager = 0, None
    if checkpoint_dir is not None:
        manager = checkpoints.manager(checkpoint_dir)
        fingerprint = checkpoints.fingerprint(s, params0, lr, temps)
        restored = checkpoints.restore(manager, carry, vectors, fingerprint, checkpoint_dir,
                                       s.fields)
        if restored is not None:
            step, carry, history, logged, vectors, warm = restored
    saved_rows = len(history)  # the rows history.jsonl holds
    carry = place.points(carry)
    sharp = _Sharpness(vectors, warm, place)
    cadence = _Cadence(s.checkpoint_every, step)
    done = bool(history) and (step == s.steps or not logged[-1].any())
    targets = [] if done else [t for t in s.log_steps if t > step or not history]
    for target in targets:
        if target > step:
            carry = run_block(s.driver, s.apply_fn, opt, s.labels, s.uso, data.num_classes, True,
                              s.matmul_precision, target - step, carry, step, batches, temps_dev,
                              data.key_steps)
            step = target
        row, diverged = _log_row(s, data._replace(batches=batches), carry, p0, temps_dev, test,
                                 num, step, sharp)
        stopped = ~np.isfinite(row["loss"]) | (diverged >= 0)
        late = (diverged < 0) & stopped  # a run stopped by a log: flagged at this step
        if late.any():  # from the flags the log read: no second read from the devices
            carry = (carry[0], carry[1], place.points(np.where(late, step, diverged).astype(np.int32)))
        row["step"] = np.full(num, float(step))
        history.append(row)
        logged.append(~stopped)
        if on_log is not None:
            on_log(step, row, ~stopped)
        last = target == targets[-1] or stopped.all()
        if manager is not None and cadence.due(step, last):
            checkpoints.save(manager, step, place.trim(carry, num), history, logged,
                             *sharp.host(num), fingerprint, s.fields, saved_rows)
            saved_rows = len(history)
        if stopped.all():
            break
    final = place.trim(carry, num)
    return _Batch(jax.tree_util.tree_map(jnp.asarray, final[0]), history, logged, final[2])


def train(
    apply_fn: Callable,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    *,
    lr: float,
    steps: int,
    log_every: int = 100,
    x_test: jax.Array | None = None,
    y_test: jax.Array | None = None,
    optimizer: str = "gd",
    temperature: float = 1.0,
    labels: str = "true",
    uso: bool = False,
    sharpness: bool = True,
    key: jax.Array | None = None,
    sharpness_iters: int = 20,
    sharpness_tol: float = 1e-3,
    chunk_size: int | None = None,
    driver: str = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    matmul_precision: str = "float32",
    checkpoint_every: int | str | None = None,
    preconditioned_sharpness: bool = False,
) -> TrainResult:
    """Train ``params`` for ``steps`` full-batch steps; log every ``log_every`` steps (and at 0 and
    at the end). See the module docstring; ``history["test_accuracy"]`` is NaN without a test
    set and ``history["sharpness"]`` NaN with ``sharpness=False`` (not measured, never a value).
    Sharpness: Lanczos from a Gaussian vector at step 0, later from the previous log's
    eigenvector, each stopped as soon as the Lanczos residual estimate is ≤ ``sharpness_tol``·|λ|
    (at most ``sharpness_iters`` steps; :func:`sharpness_of`); ``history["sharpness_residual"]``
    is the true ‖Hv − λv‖ and ``history["sharpness_matvecs"]`` the Hessian-vector products spent.
    ``driver``: ``"scan"`` (one ``lax.scan`` per block), ``"host"`` (a Python loop over one jitted
    step, for convolutional models on CPU) or ``"auto"`` (host for a convolutional model on CPU,
    else scan: :func:`auto_driver`).
    ``checkpoint_dir``: the state (parameters, optimizer state, step, history so far, the
    sharpness eigenvector) is saved there at every log (orbax, atomically); a run started on a
    directory holding a checkpoint of the same run resumes from it and ends with exactly the
    history of an uninterrupted run (one of another run is refused). ``checkpoint_every``: None
    saves at every log; N (steps) or ``"Ns"`` (seconds) at the first log at least that far after
    the last save — and always at the last log. ``on_log(step, row)`` is called with each logged
    row (field -> float) as it is measured. ``matmul_precision``: of the updates' matrix products,
    ``"float32"`` (full float32: reproduces the papers) or ``"tf32"`` (faster on recent NVIDIA
    GPUs; a CPU computes float32 either way); the logged metrics and the sharpness are always
    float32 (:mod:`gzone.precision`).

    ``uso=True``: the uniform-softmax-output model of App. E — every update combines the logit
    gradients with p_k = 1/K − 1{y = k} whatever the model predicts (:func:`update_direction`);
    by Eq. (3) an α-scaled network whose softmax is uniform, trained at
    :func:`effective_lr` ``(lr0, α, L)``, follows exactly α times this path from the same θ0
    (tested). The logged gradient metrics are then of the USO update; the loss, accuracies and
    sharpness are the true ones.

    ``preconditioned_sharpness`` (``optimizer="adam"`` only; ValueError otherwise): also log
    ``history["preconditioned_sharpness"]``, the largest eigenvalue of D^{-1/2} H D^{-1/2} with
    Adam's preconditioner D = diag(√v̂ + ε) of the optimizer state at that log (v̂ = ν/(1 − β₂ᵗ),
    the bias-corrected second moment): matrix-free, by the sharpness' Lanczos (same
    ``sharpness_iters``, ``sharpness_tol``, ``driver``) from a fresh Gaussian vector
    (:func:`gzone.training.sharpness.preconditioned_sharpness`). NaN at step 0, where Adam has no
    second moment yet (D is undefined: it is not replaced by the first step's). Without it the
    history has exactly the fields of :data:`HISTORY_FIELDS`.

    One run is a grid of one point (:func:`train_grid`): the same compiled programs."""
    stacked = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], params)
    grid = train_grid(apply_fn, stacked, x, y, lr=[lr], steps=steps, log_every=log_every,
                      x_test=x_test, y_test=y_test, optimizer=optimizer, temperature=temperature,
                      labels=labels, uso=uso, sharpness=sharpness, key=key,
                      sharpness_iters=sharpness_iters,
                      sharpness_tol=sharpness_tol,
                      chunk_size=chunk_size, driver=driver, devices=jax.local_devices()[:1],
                      checkpoint_dir=checkpoint_dir, matmul_precision=matmul_precision,
                      checkpoint_every=checkpoint_every,
                      preconditioned_sharpness=preconditioned_sharpness,
                      on_log=None if on_log is None else _single_row(on_log))
    kept = np.isfinite(grid.history["loss"][0])
    history = {f: grid.history[f][0][kept] for f in grid.history}
    history["step"] = history["step"].astype(np.int64)
    params_out = jax.tree_util.tree_map(lambda a: a[0], grid.params)
    diverged = int(grid.diverged_at[0])
    return TrainResult(params_out, history, None if diverged < 0 else diverged)


def _single_row(on_log: Callable[[int, dict[str, float]], None]) -> Callable:
    def call(step: int, row: dict[str, np.ndarray], logged: np.ndarray) -> None:
        if logged[0]:
            on_log(step, {f: float(v[0]) for f, v in row.items()})

    return call


def train_grid(
    apply_fn: Callable,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    *,
    lr: jax.Array,
    steps: int,
    log_every: int = 100,
    x_test: jax.Array | None = None,
    y_test: jax.Array | None = None,
    optimizer: str = "gd",
    temperature: float | jax.Array = 1.0,
    labels: str = "true",
    uso: bool = False,
    sharpness: bool = True,
    key: jax.Array | None = None,
    sharpness_iters: int = 20,
    sharpness_tol: float = 1e-3,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    driver: str = "auto",
    devices: Any = None,
    checkpoint_dir: str | os.PathLike | None = None,
    on_log: Callable[[int, dict[str, np.ndarray], np.ndarray], None] | None = None,
    matmul_precision: str = "float32",
    checkpoint_every: int | str | None = None,
    preconditioned_sharpness: bool = False,
) -> GridResult:
    """G runs of :func:`train` at once: ``params`` with a leading axis G (e.g. α·θ0(seed) for each
    (α, lr0, seed) point), ``lr`` (G,) and ``temperature`` scalar or (G,); the same data and
    labels for all. The updates are one program ``jax.vmap``-ped over the points, ``batch_size``
    points at a time to bound memory (default: as many as the device's memory holds, and the
    data in chunks of ``chunk_size`` samples sized for them: :func:`grid_layout`; each chunk's
    gradient is accumulated before the next one's forward pass, so the chunks bound the
    activations held: :func:`gzone.training.step.full_batch_value_and_grad`); a run that diverges is frozen and flagged
    while the others go on. Sharpness (as in :func:`train`) is estimated for all points of a batch
    at once at each log (:mod:`gzone.training.sharpness`: one vmapped Lanczos, each point stopped
    by its own residual). Results equal :func:`train` run point by point (tested).
    ``preconditioned_sharpness`` (Adam only) also logs the top eigenvalue of D^{-1/2} H D^{-1/2}
    with Adam's preconditioner D (NaN at step 0, before any second moment; see :func:`train`),
    all points of a batch in one vmapped Lanczos like the sharpness.

    ``devices`` (default: all local devices): the points of a batch are sharded over them (a 1-D
    mesh, :mod:`gzone.sharding`; a batch is padded to a multiple of their number). A grid split
    over processes gives each process its slice (:func:`gzone.sharding.process_points`).
    ``checkpoint_dir``: each batch checkpoints into ``<checkpoint_dir>/batch-<first point>`` (at
    the cadence of ``checkpoint_every``) and resumes from there (see :func:`train`). ``on_log(step, row, logged)`` is called
    at each log of each batch with the row (field -> (batch,) array) and which points were measured
    (before that log's checkpoint is saved)."""
    leaves = jax.tree_util.tree_leaves(params)
    num_points = int(leaves[0].shape[0])
    lr = np.broadcast_to(np.asarray(lr, np.float64), (num_points,))
    for value in lr:
        _check(float(value), steps, log_every, optimizer, labels, key, driver)
    if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if preconditioned_sharpness and optimizer != "adam":
        raise ValueError("preconditioned_sharpness is Adam's: it needs optimizer='adam', got "
                         f"{optimizer!r}")
    point0 = jax.tree_util.tree_map(lambda a: a[0], params)
    if driver == "auto":
        driver = auto_driver(apply_fn, point0, x[:1])
    dtype = curvature.params_dtype(params)
    width = len(jax.local_devices() if devices is None else devices)
    batch_size, chunk_size = grid_layout(
        apply_fn, point0, jnp.asarray(x, dtype), num_points, optimizer=optimizer,
        sharpness=sharpness or bool(preconditioned_sharpness), sharpness_iters=sharpness_iters,
        batch_size=batch_size, chunk_size=chunk_size, devices=width)
    data = prepare_data(apply_fn, point0, x, y, x_test, y_test, chunk_size, labels, key)
    temperatures = np.broadcast_to(np.asarray(temperature, np.float64), (num_points,))
    precision.matmul(matmul_precision)  # a known setting (ValueError otherwise)
    checkpoint_cadence(checkpoint_every)
    settings = Settings(apply_fn, optimizer, labels, bool(uso), driver, steps, log_every,
                        sharpness, sharpness_iters, sharpness_tol, key, matmul_precision,
                        checkpoint_every, bool(preconditioned_sharpness))
    size = min(batch_size, num_points)
    outputs = []
    for lo in range(0, num_points, size):
        hi = min(lo + size, num_points)
        directory = None if checkpoint_dir is None else os.path.join(checkpoint_dir, f"batch-{lo:06d}")
        outputs.append(_run_batch(
            settings, data, jax.tree_util.tree_map(lambda a, lo=lo, hi=hi: jnp.asarray(a[lo:hi], dtype), params),
            lr[lo:hi], temperatures[lo:hi], devices=devices, checkpoint_dir=directory,
            on_log=on_log))
    params_out = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *[o.params for o in outputs])
    width = max(len(o.history) for o in outputs)

    def column(o: _Batch, f: str) -> np.ndarray:  # (batch, width); logs a batch never reached: NaN
        rows = np.stack([r[f] for r in o.history], axis=1)
        return np.pad(rows, ((0, 0), (0, width - rows.shape[1])), constant_values=np.nan)

    history = {f: np.concatenate([column(o, f) for o in outputs]) for f in settings.fields}
    history["step"] = np.where(np.isfinite(history["step"]), history["step"], -1).astype(np.int64)
    return GridResult(params_out, history, np.concatenate([o.diverged_at for o in outputs]))
