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
  previous log's eigenvector and stopped once its residual estimate is below 1e-3·|λ| (the
  authors use 20 steps of power iteration from a fresh start, with no accuracy check; 20 Lanczos
  steps reach 1e-7 relative where power iteration needs ~300, PERFORMANCE-NOTES).
* Divergence: the first step whose loss or updated parameters are not finite (or a log whose
  loss, ‖g‖ or ‖θ‖ is not) stops the run; the parameters stay at the last finite ones,
  :attr:`TrainResult.diverged_at` names the step, and nothing after it enters the history. A
  metric that is merely undefined at a finite state — cos(θ, −g) at an exact minimum, where
  g = 0 (a confident network classifying every sample with a float32 loss of exactly 0) — is
  NaN in the history (null and flagged in a study's records) and the run goes on.

* :func:`train_grid` — many runs as one program vmapped over (parameters, learning rate, T),
  sharded over the local devices (:mod:`gzone.sharding`), checkpointed at every log (orbax) and
  resumed exactly; :func:`train` is a grid of one.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from gzone import checkpoints, curvature, lanczos, metrics, objective, sharding

OPTIMIZERS = ("gd", "adam")
LABELS = ("true", "random-fixed", "random-per-step")
DRIVERS = ("auto", "scan", "host")
HISTORY_FIELDS = (
    "step", "loss", "train_accuracy", "test_accuracy", "sharpness", "gradient_norm",
    "parameter_norm", "cos_param_neg_gradient", "cos_param_init", "zero_logit_samples",
    "zero_logit_entries", "entropy", "sharpness_residual", "sharpness_matvecs",
    "distance_from_init", "uniform_deviation",
)


#: a log at which one of these is not finite stops the run (the others may be undefined: NaN)
DIVERGENCE_FIELDS = ("loss", "gradient_norm", "parameter_norm")


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


def _loss(apply_fn, params, batches: curvature.Batches, temperature, uso: bool = False) -> jax.Array:
    """Full-batch temperature cross-entropy, exact sum over the chunks; with ``uso`` the USO
    objective instead (:func:`gzone.objective.uniform_softmax_objective`: its gradient is the
    update of the uniform-softmax-output model, App. E)."""
    objective_fn = objective.uniform_softmax_objective if uso else objective.cross_entropy
    return sum(objective_fn(apply_fn(params, x), y, temperature, w) for x, y, w in zip(*batches))


def update_direction(apply_fn: Callable, params: Any, batches: curvature.Batches,
                     temperature: float | jax.Array = 1.0, *, uso: bool = False) -> Any:
    """The gradient a step follows: of the full-batch cross-entropy (Eq. 3), or with ``uso`` the
    USO update (1/N) Σ_μ Σ_k (1/K − 1{y_μ = k}) ∂z_μk/∂θ / T (App. E) — a pytree like ``params``."""
    return jax.grad(lambda p: _loss(apply_fn, p, batches, temperature, uso))(params)


def _all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]))


def _step(apply_fn, optimizer, labels, uso, k, carry, step, batches, temperature, key):
    """One update; once a loss or update is non-finite the state freezes and the step is kept."""
    params, opt_state, diverged_at = carry
    batch = batches._replace(y=_labels_at(labels, batches.y, key, step, k))
    loss, grad = jax.value_and_grad(lambda p: _loss(apply_fn, p, batch, temperature, uso))(params)
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


def _steps(apply_fn, optimizer, labels, uso, k, batched, carry, step, batches, temperature, key):
    """One update of one run, or (``batched``) of every run of a grid: ``jax.vmap`` over the
    leading axis of the state and of the temperatures (same data, labels and step)."""
    if not batched:
        return _step(apply_fn, optimizer, labels, uso, k, carry, step, batches, temperature, key)
    return jax.vmap(lambda c, t: _step(apply_fn, optimizer, labels, uso, k, c, step, batches, t,
                                       key))(carry, temperature)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6), donate_argnums=(7,))
def _scan_block(apply_fn, optimizer, labels, uso, k, batched, num_steps, carry, start, batches,
                temperature, key):
    """``num_steps`` updates in one ``lax.scan`` (one compiled program, no host sync)."""

    def body(c, step):
        return _steps(apply_fn, optimizer, labels, uso, k, batched, c, step, batches, temperature,
                      key), None

    return jax.lax.scan(body, carry, start + jnp.arange(num_steps, dtype=jnp.int32))[0]


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5), donate_argnums=(6,))
def _host_step(apply_fn, optimizer, labels, uso, k, batched, carry, step, batches, temperature,
               key):
    return _steps(apply_fn, optimizer, labels, uso, k, batched, carry, step, batches, temperature,
                  key)


def _run_block(driver, apply_fn, optimizer, labels, uso, k, batched, num_steps, carry, start,
               *operands):
    if driver == "scan":
        return _scan_block(apply_fn, optimizer, labels, uso, k, batched, num_steps, carry,
                           jnp.int32(start), *operands)
    for step in range(start, start + num_steps):  # convolutions inside XLA loops are slow on CPU
        carry = _host_step(apply_fn, optimizer, labels, uso, k, batched, carry, jnp.int32(step),
                           *operands)
    return carry


# ----------------------------------------------------------------------------- metrics


@functools.partial(jax.jit, static_argnums=(0, 5))
def _log_metrics(apply_fn, params, params0, batches, temperature, uso=False):
    """Metrics at ``params`` on ``batches`` (labels as trained on), weighted full-batch means; the
    gradient ones are of the update direction (:func:`update_direction`: the USO update with
    ``uso``), the loss is always the cross-entropy."""
    if uso:
        loss = _loss(apply_fn, params, batches, temperature)
        grad = update_direction(apply_fn, params, batches, temperature, uso=True)
    else:
        loss, grad = jax.value_and_grad(lambda p: _loss(apply_fn, p, batches, temperature))(params)
    flat, g, flat0 = ravel_pytree(params)[0], ravel_pytree(grad)[0], ravel_pytree(params0)[0]
    sums = jnp.zeros(2, flat.dtype)
    counts = jnp.zeros(2, jnp.int32)  # correct and all-zero-logit samples, counted exactly
    deviation = jnp.zeros((), flat.dtype)
    for x, y, w in zip(*batches):
        z = apply_fn(params, x)
        p = objective.probs(z, temperature)
        zero = z == 0
        real = w > 0
        counts = counts + jnp.stack([jnp.sum(real & (jnp.argmax(z, -1) == y)),
                                     jnp.sum(real & jnp.all(zero, -1))])
        sums = sums + jnp.stack([jnp.sum(w * jnp.mean(zero, -1)),
                                 jnp.sum(w * metrics.softmax_entropy(p))])
        # max_μ,k |p_μk − 1/K| over the real samples (padding has w = 0)
        off = jnp.where(w[:, None] > 0, jnp.abs(p - 1.0 / p.shape[-1]), 0.0)
        deviation = jnp.maximum(deviation, jnp.max(off))
    fractions = counts.astype(flat.dtype) / _num_samples(batches).astype(flat.dtype)
    return {"loss": loss, "train_accuracy": fractions[0], "zero_logit_samples": fractions[1],
            "zero_logit_entries": sums[0], "entropy": sums[1],
            "gradient_norm": jnp.linalg.norm(g), "parameter_norm": jnp.linalg.norm(flat),
            "cos_param_neg_gradient": metrics.cosine_similarity(flat, -g),
            "cos_param_init": metrics.cosine_similarity(flat, flat0),
            "distance_from_init": jnp.linalg.norm(flat - flat0), "uniform_deviation": deviation}


@functools.partial(jax.jit, static_argnums=(0,))
def accuracy(apply_fn, params, batches):
    """The fraction of correctly classified samples, from an exact count (a sum of the 1/N weights
    rounds, e.g. to 1.0000001 in float32)."""
    correct = sum(jnp.sum((w > 0) & (jnp.argmax(apply_fn(params, x), -1) == y))
                  for x, y, w in zip(*batches))
    dtype = curvature.params_dtype(params)
    return correct.astype(dtype) / _num_samples(batches).astype(dtype)


def _num_samples(batches: curvature.Batches) -> jax.Array:
    """N, the real (non-padding) samples of ``batches``."""
    return jnp.sum(batches.w > 0)


def sharpness_of(
    apply_fn, params: Any, batches: curvature.Batches, temperature: float | jax.Array = 1.0, *,
    num_iters: int = 20, v0: jax.Array | None = None, key: jax.Array | None = None,
    tol: float | None = None,
) -> tuple[float, float, jax.Array, int]:
    """(λ, ‖Hv − λv‖, v, Hessian-vector products): the largest-magnitude eigenvalue of the
    full-batch Hessian, the true residual norm of its Ritz pair, the unit eigenvector and the cost,
    by at most ``num_iters`` Lanczos steps (:func:`gzone.lanczos.eigsh`, ``which="LM"``) from
    ``v0`` (a warm start) or a Gaussian vector from ``key``, stopped early once the Lanczos
    residual estimate is ≤ ``tol``·|λ| (the eigenvalue is then within ``tol``·|λ|, and much
    closer when it is well separated: the error is ≤ ‖r‖²/gap)."""
    op = curvature.hessian_operator(apply_fn, params, batches, None, temperature)
    dim = curvature.num_params(params)
    res = lanczos.eigsh(op, dim, 1, key=jax.random.key(0) if key is None else key,
                        num_iters=min(num_iters, dim), which="LM", v0=v0, tol=tol)
    return (float(res.eigenvalues[0]), float(res.residual_norms[0]), res.eigenvectors[:, 0],
            res.num_iters + 1)


# ----------------------------------------------------------------------------- checks and data


def _has_convolution(jaxpr: Any) -> bool:
    """Whether a jaxpr (or a closed one, or a tuple of them: sub-jaxprs in equation params)
    contains a convolution."""
    if isinstance(jaxpr, (tuple, list)):
        return any(_has_convolution(j) for j in jaxpr)
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    for eqn in getattr(jaxpr, "eqns", ()):
        if eqn.primitive.name == "conv_general_dilated":
            return True
        if any(_has_convolution(v) for v in eqn.params.values()
               if hasattr(v, "eqns") or hasattr(v, "jaxpr") or isinstance(v, (tuple, list))):
            return True
    return False


def auto_driver(apply_fn: Callable, params: Any, x: jax.Array) -> str:
    """``"host"`` for a model with convolutions on CPU (XLA:CPU runs them slowly inside loops,
    PERFORMANCE-NOTES), else ``"scan"``."""
    if jax.default_backend() != "cpu":
        return "scan"
    jaxpr = jax.make_jaxpr(apply_fn)(params, x).jaxpr
    return "host" if _has_convolution(jaxpr) else "scan"


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


class _Settings(NamedTuple):
    """What a batch of runs shares (everything but the per-point parameters, lr and T)."""

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


# ----------------------------------------------------------------------------- one batch of runs


@functools.partial(jax.jit, static_argnums=(0, 5))
def _grid_metrics(apply_fn, params, params0, batches, temperature, uso):
    return jax.vmap(lambda p, p0, t: _log_metrics(apply_fn, p, p0, batches, t, uso))(
        params, params0, temperature)


@functools.partial(jax.jit, static_argnums=(0,))
def _grid_accuracy(apply_fn, params, batches):
    return jax.vmap(lambda p: accuracy(apply_fn, p, batches))(params)


class _Batch(NamedTuple):
    params: Any  # (G, ...) final parameters
    history: list[dict[str, np.ndarray]]  # one row per log: field -> (G,), NaN where not logged
    logged: list[np.ndarray]  # per log: (G,) bool, the point was measured there
    diverged_at: np.ndarray  # (G,), -1: did not diverge


def _run_batch(settings: _Settings, data: _Data, params0: Any, lr: np.ndarray, temps: np.ndarray,
               *, devices: Any = None, checkpoint_dir: str | os.PathLike | None = None,
               on_log: Callable[[int, dict[str, np.ndarray], np.ndarray], None] | None = None,
               ) -> _Batch:
    """G runs vmapped over the leading axis of ``params0`` / ``lr`` / ``temps`` (sharded over
    ``devices`` when there are several), resumed from ``checkpoint_dir`` when it holds a
    checkpoint of these runs and checkpointed there at every log."""
    s = settings
    num = len(lr)
    dtype = curvature.params_dtype(params0)
    opt = make_optimizer(s.optimizer)
    mesh = sharding.points_mesh(devices)
    width = mesh.devices.size

    def place(tree):  # pad to a multiple of the devices and shard the points over them
        padded = sharding.pad_points(jax.device_get(tree), width)[0]
        return sharding.shard_points(padded, mesh) if width > 1 else jax.device_put(padded)

    batches = sharding.replicate(data.batches, mesh) if width > 1 else data.batches
    test = (sharding.replicate(data.test, mesh) if width > 1 and data.test is not None
            else data.test)
    p0 = place(params0)
    temps_dev = place(jnp.asarray(temps, dtype))
    state = jax.vmap(lambda p, r: init_optimizer(s.optimizer, p, r))(
        params0, jnp.asarray(lr, dtype))
    carry = (params0, state, np.full((num,), -1, np.int32))
    dim = curvature.num_params(jax.tree_util.tree_map(lambda a: a[0], params0))
    vectors, has_vector = np.zeros((num, dim), dtype), np.zeros(num, bool)
    history: list[dict[str, np.ndarray]] = []
    logged: list[np.ndarray] = []
    step = 0
    manager = fingerprint = None
    if checkpoint_dir is not None:
        manager = checkpoints.manager(checkpoint_dir)
        fingerprint = checkpoints.fingerprint(s, params0, lr, temps)
        restored = checkpoints.restore(manager, carry, vectors, fingerprint, checkpoint_dir,
                                       HISTORY_FIELDS)
        if restored is not None:
            step, carry, history, logged, vectors, has_vector = restored
    carry = place(carry)
    log_steps = sorted({*range(0, s.steps, s.log_every), s.steps})
    done = bool(history) and (step == s.steps or not logged[-1].any())
    for target in ([] if done else [t for t in log_steps if t > step or not history]):
        if target > step:
            carry = _run_block(s.driver, s.apply_fn, opt, s.labels, s.uso, data.num_classes, True,
                               target - step, carry, step, batches, temps_dev, data.key_steps)
            step = target
        diverged = np.asarray(carry[2])[:num]
        current = batches._replace(
            y=_labels_at(s.labels, batches.y, data.key_steps, jnp.int32(step), data.num_classes))
        row = {f: np.asarray(v, np.float64)[:num] for f, v in
               jax.device_get(_grid_metrics(s.apply_fn, carry[0], p0, current, temps_dev,
                                                     s.uso)).items()}
        stopped = (diverged >= 0) | ~np.all([np.isfinite(row[f]) for f in DIVERGENCE_FIELDS],
                                            axis=0)
        row["test_accuracy"] = (np.asarray(_grid_accuracy(s.apply_fn, carry[0], test),
                                           np.float64)[:num]
                                if test is not None else np.full(num, np.nan))
        for f in ("sharpness", "sharpness_residual", "sharpness_matvecs"):
            row[f] = np.full(num, np.nan)
        for i in np.flatnonzero(~stopped if s.sharpness else []):
            point = jax.tree_util.tree_map(lambda a, i=i: a[i], carry[0])
            lam, residual, vector, matvecs = sharpness_of(  # warm: the previous log's vector
                s.apply_fn, point, current, jnp.asarray(temps[i], dtype),
                num_iters=s.sharpness_iters, v0=vectors[i] if has_vector[i] else None,
                key=jax.random.fold_in(data.key_sharpness, step), tol=s.sharpness_tol)
            row["sharpness"][i], row["sharpness_residual"][i] = lam, residual
            row["sharpness_matvecs"][i] = matvecs
            vectors[i], has_vector[i] = np.asarray(vector), True
        # a loss, gradient or parameter norm that is not finite at a log stops that run here too
        late = (diverged < 0) & stopped
        if late.any():
            flags = np.asarray(carry[2]).copy()
            flags[:num] = np.where(late, step, diverged)
            carry = (carry[0], carry[1], place(flags[:num]))
        for f in row:
            row[f] = np.where(stopped, np.nan, row[f])
        row["step"] = np.full(num, float(step))
        history.append(row)
        logged.append(~stopped)
        if on_log is not None:
            on_log(step, row, ~stopped)
        if manager is not None:
            host = jax.tree_util.tree_map(lambda a: np.asarray(a)[:num], jax.device_get(carry))
            checkpoints.save(manager, step, host, history, logged, vectors, has_vector, fingerprint,
                             HISTORY_FIELDS)
        if stopped.all():
            break
    final = jax.tree_util.tree_map(lambda a: np.asarray(a)[:num], jax.device_get(carry))
    return _Batch(jax.tree_util.tree_map(jnp.asarray, final[0]), history, logged, final[2])


# ----------------------------------------------------------------------------- train


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
    history of an uninterrupted run (one of another run is refused). ``on_log(step, row)`` is
    called with each logged row (field -> float) as it is measured.

    ``uso=True``: the uniform-softmax-output model of App. E — every update combines the logit
    gradients with p_k = 1/K − 1{y = k} whatever the model predicts (:func:`update_direction`);
    by Eq. (3) an α-scaled network whose softmax is uniform, trained at
    :func:`effective_lr` ``(lr0, α, L)``, follows exactly α times this path from the same θ0
    (tested). The logged gradient metrics are then of the USO update; the loss, accuracies and
    sharpness are the true ones.

    One run is a grid of one point (:func:`train_grid`): the same compiled programs."""
    stacked = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], params)
    grid = train_grid(apply_fn, stacked, x, y, lr=[lr], steps=steps, log_every=log_every,
                      x_test=x_test, y_test=y_test, optimizer=optimizer, temperature=temperature,
                      labels=labels, uso=uso, sharpness=sharpness, key=key,
                      sharpness_iters=sharpness_iters,
                      sharpness_tol=sharpness_tol,
                      chunk_size=chunk_size, driver=driver, devices=jax.local_devices()[:1],
                      checkpoint_dir=checkpoint_dir,
                      on_log=None if on_log is None else _single_row(on_log))
    kept = np.isfinite(grid.history["loss"][0])
    history = {f: grid.history[f][0][kept] for f in HISTORY_FIELDS}
    history["step"] = history["step"].astype(np.int64)
    params_out = jax.tree_util.tree_map(lambda a: a[0], grid.params)
    diverged = int(grid.diverged_at[0])
    return TrainResult(params_out, history, None if diverged < 0 else diverged)


def _single_row(on_log: Callable[[int, dict[str, float]], None]) -> Callable:
    def call(step: int, row: dict[str, np.ndarray], logged: np.ndarray) -> None:
        if logged[0]:
            on_log(step, {f: float(v[0]) for f, v in row.items()})

    return call


# ----------------------------------------------------------------------------- grids


class GridResult(NamedTuple):
    """A grid of G runs: final parameters (leading axis G), the history (each field (G, logs);
    entries after a run's divergence are NaN — not measured — and its ``diverged_at`` says so),
    and ``diverged_at`` (G,) with −1 for runs that did not diverge."""

    params: Any
    history: dict[str, np.ndarray]
    diverged_at: np.ndarray


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
) -> GridResult:
    """G runs of :func:`train` at once: ``params`` with a leading axis G (e.g. α·θ0(seed) for each
    (α, lr0, seed) point), ``lr`` (G,) and ``temperature`` scalar or (G,); the same data and
    labels for all. The updates are one program ``jax.vmap``-ped over the points, ``batch_size``
    points at a time (all by default) to bound memory; a run that diverges is frozen and flagged
    while the others go on. Sharpness (as in :func:`train`) is estimated point by point at each
    log. Results equal :func:`train` run point by point (tested).

    ``devices`` (default: all local devices): the points of a batch are sharded over them (a 1-D
    mesh, :mod:`gzone.sharding`; a batch is padded to a multiple of their number). A grid split
    over processes gives each process its slice (:func:`gzone.sharding.process_points`).
    ``checkpoint_dir``: each batch checkpoints into ``<checkpoint_dir>/batch-<first point>`` at
    every log and resumes from there (see :func:`train`). ``on_log(step, row, logged)`` is called
    at each log of each batch with the row (field -> (batch,) array) and which points were measured
    (before that log's checkpoint is saved)."""
    leaves = jax.tree_util.tree_leaves(params)
    num_points = int(leaves[0].shape[0])
    lr = np.broadcast_to(np.asarray(lr, np.float64), (num_points,))
    for value in lr:
        _check(float(value), steps, log_every, optimizer, labels, key, driver)
    if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    point0 = jax.tree_util.tree_map(lambda a: a[0], params)
    if driver == "auto":
        driver = auto_driver(apply_fn, point0, x[:1])
    dtype = curvature.params_dtype(params)
    data = _prepare_data(apply_fn, point0, x, y, x_test, y_test, chunk_size, labels, key)
    temperatures = np.broadcast_to(np.asarray(temperature, np.float64), (num_points,))
    settings = _Settings(apply_fn, optimizer, labels, bool(uso), driver, steps, log_every,
                         sharpness, sharpness_iters, sharpness_tol, key)
    size = num_points if batch_size is None else min(batch_size, num_points)
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

    history = {f: np.concatenate([column(o, f) for o in outputs]) for f in HISTORY_FIELDS}
    history["step"] = np.where(np.isfinite(history["step"]), history["step"], -1).astype(np.int64)
    return GridResult(params_out, history, np.concatenate([o.diverged_at for o in outputs]))
