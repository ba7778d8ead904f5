"""One update of a full-batch training run (ICML Sec. 5): the optimizers, the labels trained on,
the objective (the cross-entropy, or the USO update of App. E) and the jit-compiled blocks of
steps between two logs — a ``lax.scan`` block, or a host loop over one jitted step for
convolutional models on CPU (:func:`auto_driver`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from gzone import curvature, objective, precision

OPTIMIZERS = ("gd", "adam")
LABELS = ("true", "random-fixed", "random-per-step")
DRIVERS = ("auto", "scan", "host")


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


def labels_at(labels: str, base: jax.Array, key: jax.Array, step: jax.Array, k: int) -> jax.Array:
    """The labels trained on at ``step``: the true (or once-drawn random) ones, or fresh uniform
    random labels from ``fold_in(key, step)``."""
    if labels == "random-per-step":
        return jax.random.randint(jax.random.fold_in(key, step), base.shape, 0, k, base.dtype)
    return base


def full_batch_loss(apply_fn, params, batches: curvature.Batches, temperature, uso: bool = False) -> jax.Array:
    """Full-batch temperature cross-entropy, exact sum over the chunks; with ``uso`` the USO
    objective instead (:func:`gzone.objective.uniform_softmax_objective`: its gradient is the
    update of the uniform-softmax-output model, App. E)."""
    objective_fn = objective.uniform_softmax_objective if uso else objective.cross_entropy
    return sum(objective_fn(apply_fn(params, x), y, temperature, w) for x, y, w in zip(*batches))


def full_batch_value_and_grad(apply_fn: Callable, params: Any, batches: curvature.Batches,
                              temperature: float | jax.Array, uso: bool = False,
                              scan: bool | None = None) -> tuple[jax.Array, Any]:
    """:func:`full_batch_loss` and its gradient, accumulated chunk by chunk: each chunk's
    forward and backward pass done before the next begins, so memory is bounded by one chunk's
    activations whatever N (one autodiff pass over the whole sum keeps every chunk's
    activations until its backward pass). ``scan``: accumulate in a ``lax.scan`` over the chunks
    (one chunk's buffers, reused: LeNet-300-100 on 6,000 images in 6 chunks compiles to 6.9 MiB
    of temporaries against 23 MiB unchunked); False: a Python loop of per-chunk gradients, which
    XLA may still schedule all at once (37 MiB there) — for convolutions on CPU, which XLA runs
    slowly inside loops; None: scan unless on CPU."""
    objective_fn = objective.uniform_softmax_objective if uso else objective.cross_entropy

    def chunk(p, x, y, w):
        return jax.value_and_grad(lambda q: objective_fn(apply_fn(q, x), y, temperature, w))(p)

    if scan is None:
        scan = jax.default_backend() != "cpu"
    if batches.x.shape[0] == 1 or not scan:
        parts = [chunk(params, x, y, w) for x, y, w in zip(*batches)]
        return (sum(v for v, _ in parts),
                jax.tree_util.tree_map(lambda *g: sum(g[1:], g[0]), *[g for _, g in parts]))

    def body(total, data):
        value, grad = chunk(params, *data)
        return (total[0] + value, jax.tree_util.tree_map(jnp.add, total[1], grad)), None

    zero = (jnp.zeros((), curvature.params_dtype(params)), jax.tree_util.tree_map(jnp.zeros_like, params))
    return jax.lax.scan(body, zero, tuple(batches))[0]


def update_direction(apply_fn: Callable, params: Any, batches: curvature.Batches,
                     temperature: float | jax.Array = 1.0, *, uso: bool = False) -> Any:
    """The gradient a step follows: of the full-batch cross-entropy (Eq. 3), or with ``uso`` the
    USO update (1/N) Σ_μ Σ_k (1/K − 1{y_μ = k}) ∂z_μk/∂θ / T (App. E) — a pytree like ``params``."""
    return full_batch_value_and_grad(apply_fn, params, batches, temperature, uso)[1]


def _all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]))


def _step(apply_fn, optimizer, labels, uso, k, carry, step, batches, temperature, key, scan):
    """One update; once a loss or update is non-finite the state freezes and the step is kept.
    ``scan``: the chunks' gradients accumulated in a ``lax.scan`` (memory of one chunk)."""
    params, opt_state, diverged_at = carry
    batch = batches._replace(y=labels_at(labels, batches.y, key, step, k))
    loss, grad = full_batch_value_and_grad(apply_fn, params, batch, temperature, uso, scan)
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


def _steps(apply_fn, optimizer, labels, uso, k, batched, matmul, carry, step, batches,
           temperature, key, scan=True):
    """One update of one run, or (``batched``) of every run of a grid: ``jax.vmap`` over the
    leading axis of the state and of the temperatures (same data, labels and step); matrix
    products at the ``matmul`` setting (:data:`gzone.precision.MATMUL_PRECISIONS`)."""
    with precision.matmul(matmul):
        if not batched:
            return _step(apply_fn, optimizer, labels, uso, k, carry, step, batches, temperature,
                         key, scan)
        return jax.vmap(lambda c, t: _step(apply_fn, optimizer, labels, uso, k, c, step, batches, t,
                                           key, scan))(carry, temperature)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6, 7), donate_argnums=(8,))
def _scan_block(apply_fn, optimizer, labels, uso, k, batched, matmul, num_steps, carry, start,
                batches, temperature, key):
    """``num_steps`` updates in one ``lax.scan`` (one compiled program, no host sync)."""

    def body(c, step):
        return _steps(apply_fn, optimizer, labels, uso, k, batched, matmul, c, step, batches,
                      temperature, key), None

    return jax.lax.scan(body, carry, start + jnp.arange(num_steps, dtype=jnp.int32))[0]


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6), donate_argnums=(7,))
def _host_step(apply_fn, optimizer, labels, uso, k, batched, matmul, carry, step, batches,
               temperature, key):
    # the host driver serves convolutions on CPU: no loop over the chunks either
    return _steps(apply_fn, optimizer, labels, uso, k, batched, matmul, carry, step, batches,
                  temperature, key, scan=False)


def run_block(driver, apply_fn, optimizer, labels, uso, k, batched, matmul, num_steps, carry,
              start, *operands):
    """``num_steps`` updates from step ``start``: one ``lax.scan`` program (``driver="scan"``) or
    a host loop over one compiled step (``"host"``)."""
    if driver == "scan":
        return _scan_block(apply_fn, optimizer, labels, uso, k, batched, matmul, num_steps, carry,
                           jnp.int32(start), *operands)
    for step in range(start, start + num_steps):  # convolutions inside XLA loops are slow on CPU
        carry = _host_step(apply_fn, optimizer, labels, uso, k, batched, matmul, carry,
                           jnp.int32(step), *operands)
    return carry


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
