"""Full-batch training of (α-scaled) networks: ICML paper Sec. 5 (and the engine of App. E and of
Fort & Scherlis' training studies).

* :func:`effective_lr` — the paper's learning rate for an α-scaled network of degree L at T = 1,
  η = η0 · α^(2 − L), so that η0 is comparable across α. Behind it, Eq. (3): at T = α^L and with
  the learning rate times α², training ``scale(θ0, α)`` is exactly α times training θ0 (tested).
* :func:`train` — full-batch GD (``optax.sgd``, no momentum: the paper) or Adam (``optax.adam``)
  on the temperature cross-entropy, true or random labels; steps run in jit-compiled blocks of
  ``log_every`` steps between logs (one host sync per log), the data laid out once as
  :class:`gzone.curvature.Batches` (exact full-batch sums over chunks). Each log records the
  metrics of :data:`HISTORY_FIELDS` at the parameters *before* that step's update, including the
  sharpness — the largest-magnitude Hessian eigenvalue by gzone's Lanczos, warm-started from the
  previous log's eigenvector (the authors use 20 steps of power iteration from a fresh start; 20
  Lanczos steps reach 1e-7 relative where power iteration needs ~300, PERFORMANCE-NOTES).
* Divergence: the first step whose loss or updated parameters are not finite stops the run; the
  parameters stay at the last finite ones, :attr:`TrainResult.diverged_at` names the step, and no
  non-finite value enters the history.

* :func:`train_grid` — many runs as one program vmapped over (parameters, learning rate, T).

Not yet here (issue #10): sharding of grids, checkpoints, the trainability study and script.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from gzone import curvature, lanczos, metrics, objective

OPTIMIZERS = ("gd", "adam")
LABELS = ("true", "random-fixed", "random-per-step")
DRIVERS = ("auto", "scan", "host")
HISTORY_FIELDS = (
    "step", "loss", "train_accuracy", "test_accuracy", "sharpness", "gradient_norm",
    "parameter_norm", "cos_param_neg_gradient", "cos_param_init", "zero_logit_samples",
    "zero_logit_entries", "entropy", "sharpness_residual",
)


class TrainResult(NamedTuple):
    """Final parameters, the history (one entry per logged step, step 0 included; numpy arrays
    of equal length keyed by :data:`HISTORY_FIELDS`) and the first non-finite step (or None)."""

    params: Any
    history: dict[str, np.ndarray]
    diverged_at: int | None


def effective_lr(lr0: float, alpha: float, degree: int) -> float:
    """η0 · α^(2 − L), the learning rate of an α-scaled network homogeneous of degree L."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    return lr0 * alpha ** (2 - degree)


@functools.cache
def make_optimizer(name: str) -> optax.GradientTransformation:
    """``"gd"``: optax.sgd (no momentum); ``"adam"``: optax.adam (default betas, eps) — with the
    learning rate a state hyperparameter (``optax.inject_hyperparams``), so one compiled step
    serves every learning rate; one object per name (a static argument of the compiled steps)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return optax.inject_hyperparams(optax.sgd if name == "gd" else optax.adam)(learning_rate=1.0)


def init_optimizer(name: str, params: Any, lr: float | jax.Array) -> Any:
    """The optimizer state of :func:`make_optimizer` ``(name)`` for ``params`` at learning rate ``lr``."""
    state = make_optimizer(name).init(params)
    state.hyperparams["learning_rate"] = jnp.asarray(lr, curvature.params_dtype(params))
    return state


# ----------------------------------------------------------------------------- steps


def _labels_at(labels: str, base: jax.Array, key: jax.Array, step: jax.Array, k: int) -> jax.Array:
    """The labels trained on at ``step``: the true (or once-drawn random) ones, or fresh uniform
    random labels from ``fold_in(key, step)``."""
    if labels == "random-per-step":
        return jax.random.randint(jax.random.fold_in(key, step), base.shape, 0, k, base.dtype)
    return base


def _loss(apply_fn, params, batches: curvature.Batches, temperature) -> jax.Array:
    """Full-batch temperature cross-entropy, exact sum over the chunks."""
    return sum(objective.cross_entropy(apply_fn(params, x), y, temperature, w)
               for x, y, w in zip(*batches))


def _all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]))


def _step(apply_fn, optimizer, labels, k, carry, step, batches, temperature, key):
    """One update; once a loss or update is non-finite the state freezes and the step is kept."""
    params, opt_state, diverged_at = carry
    batch = batches._replace(y=_labels_at(labels, batches.y, key, step, k))
    loss, grad = jax.value_and_grad(lambda p: _loss(apply_fn, p, batch, temperature))(params)
    updates, new_state = optimizer.update(grad, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    bad_loss = ~jnp.isfinite(loss) | ~_all_finite(grad)
    bad = bad_loss | ~_all_finite(new_params)
    first = jnp.where(bad_loss, step, step + 1).astype(diverged_at.dtype)
    diverged_at = jnp.where((diverged_at < 0) & bad, first, diverged_at)
    keep = diverged_at >= 0

    def select(new, old):
        return jax.tree_util.tree_map(lambda a, b: jnp.where(keep, b, a), new, old)

    return select(new_params, params), select(new_state, opt_state), diverged_at


def _steps(apply_fn, optimizer, labels, k, batched, carry, step, batches, temperature, key):
    """One update of one run, or (``batched``) of every run of a grid: ``jax.vmap`` over the
    leading axis of the state and of the temperatures (same data, labels and step)."""
    if not batched:
        return _step(apply_fn, optimizer, labels, k, carry, step, batches, temperature, key)
    return jax.vmap(lambda c, t: _step(apply_fn, optimizer, labels, k, c, step, batches, t, key))(
        carry, temperature)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5), donate_argnums=(6,))
def _scan_block(apply_fn, optimizer, labels, k, batched, num_steps, carry, start, batches,
                temperature, key):
    """``num_steps`` updates in one ``lax.scan`` (one compiled program, no host sync)."""

    def body(c, step):
        return _steps(apply_fn, optimizer, labels, k, batched, c, step, batches, temperature,
                      key), None

    return jax.lax.scan(body, carry, start + jnp.arange(num_steps, dtype=jnp.int32))[0]


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4), donate_argnums=(5,))
def _host_step(apply_fn, optimizer, labels, k, batched, carry, step, batches, temperature, key):
    return _steps(apply_fn, optimizer, labels, k, batched, carry, step, batches, temperature, key)


def _run_block(driver, apply_fn, optimizer, labels, k, batched, num_steps, carry, start, *operands):
    if driver == "scan":
        return _scan_block(apply_fn, optimizer, labels, k, batched, num_steps, carry,
                           jnp.int32(start), *operands)
    for step in range(start, start + num_steps):  # convolutions inside XLA loops are slow on CPU
        carry = _host_step(apply_fn, optimizer, labels, k, batched, carry, jnp.int32(step),
                           *operands)
    return carry


# ----------------------------------------------------------------------------- metrics


@functools.partial(jax.jit, static_argnums=(0,))
def _log_metrics(apply_fn, params, params0, batches, temperature):
    """Metrics at ``params`` on ``batches`` (labels as trained on), weighted full-batch means."""
    loss, grad = jax.value_and_grad(lambda p: _loss(apply_fn, p, batches, temperature))(params)
    flat, g, flat0 = ravel_pytree(params)[0], ravel_pytree(grad)[0], ravel_pytree(params0)[0]
    sums = jnp.zeros(4, flat.dtype)
    for x, y, w in zip(*batches):
        z = apply_fn(params, x)
        p = objective.probs(z, temperature)
        zero = z == 0
        sums = sums + jnp.stack([
            jnp.sum(w * (jnp.argmax(z, -1) == y)), jnp.sum(w * jnp.all(zero, -1)),
            jnp.sum(w * jnp.mean(zero, -1)), jnp.sum(w * metrics.softmax_entropy(p))])
    return {"loss": loss, "train_accuracy": sums[0], "zero_logit_samples": sums[1],
            "zero_logit_entries": sums[2], "entropy": sums[3],
            "gradient_norm": jnp.linalg.norm(g), "parameter_norm": jnp.linalg.norm(flat),
            "cos_param_neg_gradient": metrics.cosine_similarity(flat, -g),
            "cos_param_init": metrics.cosine_similarity(flat, flat0)}


@functools.partial(jax.jit, static_argnums=(0,))
def _accuracy(apply_fn, params, batches):
    return sum(jnp.sum(w * (jnp.argmax(apply_fn(params, x), -1) == y)) for x, y, w in zip(*batches))


def sharpness_of(
    apply_fn, params: Any, batches: curvature.Batches, temperature: float | jax.Array = 1.0, *,
    num_iters: int = 20, v0: jax.Array | None = None, key: jax.Array | None = None,
) -> tuple[float, float, jax.Array]:
    """(λ, ‖Hv − λv‖, v): the largest-magnitude eigenvalue of the full-batch Hessian, the true
    residual norm of its Ritz pair and the unit eigenvector, by ``num_iters`` Lanczos steps
    (:func:`gzone.lanczos.eigsh`, ``which="LM"``) from ``v0`` (the previous log's eigenvector, a
    warm start) or a Gaussian vector from ``key``."""
    op = curvature.hessian_operator(apply_fn, params, batches, None, temperature)
    dim = curvature.num_params(params)
    res = lanczos.eigsh(op, dim, 1, key=jax.random.key(0) if key is None else key,
                        num_iters=min(num_iters, dim), which="LM", v0=v0)
    return float(res.eigenvalues[0]), float(res.residual_norms[0]), res.eigenvectors[:, 0]


def warm_sharpness(
    apply_fn, params: Any, batches: curvature.Batches, temperature, vector: jax.Array | None, *,
    key: jax.Array, iters: int, warm_iters: int, tol: float,
) -> tuple[float, float, jax.Array]:
    """:func:`sharpness_of` with ``iters`` Lanczos steps from scratch (``vector`` None), else
    ``warm_iters`` from ``vector``, rerun with ``iters`` (still warm) when the relative residual
    ‖Hv − λv‖/|λ| exceeds ``tol``. Returns (λ, residual, eigenvector)."""
    estimate = functools.partial(sharpness_of, apply_fn, params, batches, temperature, key=key)
    lam, residual, new = estimate(v0=vector, num_iters=iters if vector is None else warm_iters)
    if vector is not None and not residual <= tol * abs(lam):
        lam, residual, new = estimate(v0=vector, num_iters=iters)
    return lam, residual, new


# ----------------------------------------------------------------------------- train


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


class _Data(NamedTuple):
    batches: curvature.Batches  # training data, labels as trained on (random-fixed drawn here)
    test: curvature.Batches | None
    num_classes: int
    key_steps: jax.Array  # per-step random labels
    key_sharpness: jax.Array


def _prepare_data(apply_fn, params, x, y, x_test, y_test, chunk_size, labels, key) -> _Data:
    """The data of a run (or of every run of a grid; ``params`` of one run), laid out once."""
    batches = curvature.prepare_batches(apply_fn, params, x, y, chunk_size)
    test = (None if x_test is None else
            curvature.prepare_batches(apply_fn, params, x_test, y_test, chunk_size))
    k = int(jax.eval_shape(apply_fn, params, batches.x[0]).shape[-1])
    key_labels, key_steps, key_sharp = jax.random.split(jax.random.key(0) if key is None else key, 3)
    if labels == "random-fixed":
        batches = batches._replace(
            y=jax.random.randint(key_labels, batches.y.shape, 0, k, batches.y.dtype))
    return _Data(batches, test, k, key_steps, key_sharp)


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
    sharpness: bool = True,
    key: jax.Array | None = None,
    sharpness_iters: int = 20,
    sharpness_warm_iters: int = 5,
    sharpness_tol: float = 1e-3,
    chunk_size: int | None = None,
    driver: str = "auto",
) -> TrainResult:
    """Train ``params`` for ``steps`` full-batch steps; log every ``log_every`` steps (and at 0 and
    at the end). See the module docstring; ``history["test_accuracy"]`` is NaN without a test
    set and ``history["sharpness"]`` NaN with ``sharpness=False`` (not measured, never a value).
    Sharpness: ``sharpness_iters`` Lanczos steps at step 0; later, ``sharpness_warm_iters`` from
    the previous log's eigenvector, repeated with ``sharpness_iters`` (still warm) when the relative
    residual ‖Hv − λv‖/|λ| exceeds ``sharpness_tol`` (early training, where the top eigenvector
    turns fast); ``history["sharpness_residual"]`` is ‖Hv − λv‖ of the estimate kept.
    ``driver``: ``"scan"`` (one ``lax.scan`` per block), ``"host"`` (a Python loop over one jitted
    step, for convolutional models on CPU) or ``"auto"`` (host on CPU, scan elsewhere)."""
    _check(lr, steps, log_every, optimizer, labels, key, driver)
    if driver == "auto":
        driver = "host" if jax.default_backend() == "cpu" else "scan"
    dtype = curvature.params_dtype(params)
    batches, test, k, key_steps, key_sharp = _prepare_data(
        apply_fn, params, x, y, x_test, y_test, chunk_size, labels, key)
    temperature = jnp.asarray(temperature, dtype)
    opt = make_optimizer(optimizer)
    params0 = params
    start = jax.tree_util.tree_map(jnp.copy, params)  # the blocks donate their state
    carry = (start, init_optimizer(optimizer, start, lr), jnp.asarray(-1, jnp.int32))
    history: dict[str, list[float]] = {f: [] for f in HISTORY_FIELDS}
    vector, diverged_at, step = None, None, 0
    log_steps = sorted({*range(0, steps, log_every), steps})
    for target in log_steps:
        if target > step:
            carry = _run_block(driver, apply_fn, opt, labels, k, False, target - step, carry,
                               step, batches, temperature, key_steps)
            first_bad = int(carry[2])
            if first_bad >= 0:
                diverged_at = first_bad
                break
            step = target
        current = batches._replace(y=_labels_at(labels, batches.y, key_steps, jnp.int32(step), k))
        row = jax.device_get(_log_metrics(apply_fn, carry[0], params0, current, temperature))
        if not all(np.isfinite(v) for v in row.values()):  # a non-finite metric at a finite loss
            diverged_at = step
            break
        row["step"] = step
        row["test_accuracy"] = (float(_accuracy(apply_fn, carry[0], test)) if test is not None
                                else float("nan"))
        row["sharpness"] = row["sharpness_residual"] = float("nan")
        if sharpness:
            row["sharpness"], row["sharpness_residual"], vector = warm_sharpness(
                apply_fn, carry[0], current, temperature, vector,
                key=jax.random.fold_in(key_sharp, step), iters=sharpness_iters,
                warm_iters=sharpness_warm_iters, tol=sharpness_tol)
        for f in HISTORY_FIELDS:
            history[f].append(float(row[f]))
    out = {f: np.asarray(v, np.int64 if f == "step" else np.float64) for f, v in history.items()}
    return TrainResult(carry[0], out, diverged_at)


# ----------------------------------------------------------------------------- grids


class GridResult(NamedTuple):
    """A grid of G runs: final parameters (leading axis G), the history (each field (G, logs);
    entries after a run's divergence are NaN — not measured — and its ``diverged_at`` says so),
    and ``diverged_at`` (G,) with −1 for runs that did not diverge."""

    params: Any
    history: dict[str, np.ndarray]
    diverged_at: np.ndarray


@functools.partial(jax.jit, static_argnums=(0,))
def _grid_metrics(apply_fn, params, params0, batches, temperature):
    return jax.vmap(lambda p, p0, t: _log_metrics(apply_fn, p, p0, batches, t))(
        params, params0, temperature)


@functools.partial(jax.jit, static_argnums=(0,))
def _grid_accuracy(apply_fn, params, batches):
    return jax.vmap(lambda p: _accuracy(apply_fn, p, batches))(params)


def _grid_slice(tree: Any, lo: int, hi: int) -> Any:
    return jax.tree_util.tree_map(lambda a: a[lo:hi], tree)


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
    sharpness: bool = True,
    key: jax.Array | None = None,
    sharpness_iters: int = 20,
    sharpness_warm_iters: int = 5,
    sharpness_tol: float = 1e-3,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    driver: str = "auto",
) -> GridResult:
    """G runs of :func:`train` at once: ``params`` with a leading axis G (e.g. α·θ0(seed) for each
    (α, lr0, seed) point), ``lr`` (G,) and ``temperature`` scalar or (G,); the same data and
    labels for all. The updates are one program ``jax.vmap``-ped over the points, ``batch_size``
    points at a time (all by default) to bound memory; a run that diverges is frozen and flagged
    while the others go on. Sharpness (as in :func:`train`) is estimated point by point at each
    log. Results equal :func:`train` run point by point (tested)."""
    leaves = jax.tree_util.tree_leaves(params)
    num_points = int(leaves[0].shape[0])
    lr = np.broadcast_to(np.asarray(lr, np.float64), (num_points,))
    for value in lr:
        _check(float(value), steps, log_every, optimizer, labels, key, driver)
    if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if driver == "auto":
        driver = "host" if jax.default_backend() == "cpu" else "scan"
    point0 = jax.tree_util.tree_map(lambda a: a[0], params)
    dtype = curvature.params_dtype(params)
    batches, test, k, key_steps, key_sharp = _prepare_data(
        apply_fn, point0, x, y, x_test, y_test, chunk_size, labels, key)
    temperatures = jnp.broadcast_to(jnp.asarray(temperature, dtype), (num_points,))
    opt = make_optimizer(optimizer)
    log_steps = sorted({*range(0, steps, log_every), steps})
    size = num_points if batch_size is None else min(batch_size, num_points)
    outputs = []
    for lo in range(0, num_points, size):
        hi = min(lo + size, num_points)
        p0 = _grid_slice(params, lo, hi)
        start = jax.tree_util.tree_map(jnp.copy, p0)
        state = jax.vmap(lambda p, r: init_optimizer(optimizer, p, r))(start, jnp.asarray(lr[lo:hi], dtype))
        carry = (start, state, jnp.full((hi - lo,), -1, jnp.int32))
        temps = temperatures[lo:hi]
        rows: list[dict[str, np.ndarray]] = []
        vectors: list[jax.Array | None] = [None] * (hi - lo)
        step = 0
        for target in log_steps:
            if target > step:
                carry = _run_block(driver, apply_fn, opt, labels, k, True, target - step, carry,
                                   step, batches, temps, key_steps)
                step = target
            diverged = np.asarray(carry[2])
            current = batches._replace(y=_labels_at(labels, batches.y, key_steps, jnp.int32(step), k))
            row = {f: np.asarray(v, np.float64) for f, v in
                   jax.device_get(_grid_metrics(apply_fn, carry[0], p0, current, temps)).items()}
            stopped = (diverged >= 0) | ~np.all([np.isfinite(v) for v in row.values()], axis=0)
            row["test_accuracy"] = (np.asarray(_grid_accuracy(apply_fn, carry[0], test), np.float64)
                                    if test is not None else np.full(hi - lo, np.nan))
            row["sharpness"] = np.full(hi - lo, np.nan)
            row["sharpness_residual"] = np.full(hi - lo, np.nan)
            for i in np.flatnonzero(~stopped if sharpness else []):
                point = jax.tree_util.tree_map(lambda a, i=i: a[i], carry[0])
                row["sharpness"][i], row["sharpness_residual"][i], vectors[i] = warm_sharpness(
                    apply_fn, point, current, temps[i], vectors[i],
                    key=jax.random.fold_in(key_sharp, step), iters=sharpness_iters,
                    warm_iters=sharpness_warm_iters, tol=sharpness_tol)
            # a metric that is not finite at a finite loss stops that run here too
            late = (diverged < 0) & stopped
            carry = (carry[0], carry[1], jnp.asarray(np.where(late, step, diverged), jnp.int32))
            for f in row:
                row[f] = np.where(stopped, np.nan, row[f])
            row["step"] = np.full(hi - lo, step)
            rows.append(row)
            if stopped.all():
                break
        history = {f: np.stack([r[f] for r in rows], axis=1) for f in HISTORY_FIELDS}
        history["step"] = history["step"].astype(np.int64)
        outputs.append((carry[0], history, np.asarray(carry[2])))
    params_out = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *[o[0] for o in outputs])
    width = max(o[1]["step"].shape[1] for o in outputs)

    def pad(a: np.ndarray) -> np.ndarray:  # batches that stopped early: NaN (not measured)
        fill = -1 if a.dtype == np.int64 else np.nan
        return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill)

    history = {f: np.concatenate([pad(o[1][f]) for o in outputs]) for f in HISTORY_FIELDS}
    return GridResult(params_out, history, np.concatenate([o[2] for o in outputs]))
