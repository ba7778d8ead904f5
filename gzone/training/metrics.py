"""What a training run logs (ICML Sec. 5), at full float32 (:mod:`gzone.precision`): loss and
accuracies, the gradient and parameter geometry, zero logits, entropy, the softmax's distance from
uniform — one jitted pass over the data, vmapped over a batch of runs — and the sharpness, the largest-magnitude Hessian eigenvalue
by gzone's Lanczos (warm-started from the previous log's eigenvector, stopped on its residual).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gzone import curvature, lanczos, metrics, objective
from gzone.precision import strictly
from gzone.training.step import full_batch_loss, full_batch_value_and_grad, update_direction

#: the metrics of a log, in the order of a run's history
HISTORY_FIELDS = (
    "step", "loss", "train_accuracy", "test_accuracy", "sharpness", "gradient_norm",
    "parameter_norm", "cos_param_neg_gradient", "cos_param_init", "zero_logit_samples",
    "zero_logit_entries", "entropy", "sharpness_residual", "sharpness_matvecs",
    "distance_from_init", "uniform_deviation",
)
#: a log at which one of these is not finite stops the run (the others may be undefined: NaN)
DIVERGENCE_FIELDS = ("loss", "gradient_norm", "parameter_norm")
SHARPNESS_FIELDS = ("sharpness", "sharpness_residual", "sharpness_matvecs")
#: logged after :data:`HISTORY_FIELDS` with ``preconditioned_sharpness=True`` (Adam only)
PRECONDITIONED_FIELDS = ("preconditioned_sharpness",)


@functools.partial(jax.jit, static_argnums=(0, 5))
@strictly
def log_metrics(apply_fn, params, params0, batches, temperature, uso=False):
    """Metrics at ``params`` on ``batches`` (labels as trained on), weighted full-batch means; the
    gradient ones are of the update direction (:func:`update_direction`: the USO update with
    ``uso``), the loss is always the cross-entropy."""
    if uso:
        loss = full_batch_loss(apply_fn, params, batches, temperature)
        grad = update_direction(apply_fn, params, batches, temperature, uso=True)
    else:
        loss, grad = full_batch_value_and_grad(apply_fn, params, batches, temperature)
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
    fractions = counts.astype(flat.dtype) / num_samples(batches).astype(flat.dtype)
    return {"loss": loss, "train_accuracy": fractions[0], "zero_logit_samples": fractions[1],
            "zero_logit_entries": sums[0], "entropy": sums[1],
            "gradient_norm": jnp.linalg.norm(g), "parameter_norm": jnp.linalg.norm(flat),
            "cos_param_neg_gradient": metrics.cosine_similarity(flat, -g),
            "cos_param_init": metrics.cosine_similarity(flat, flat0),
            "distance_from_init": jnp.linalg.norm(flat - flat0), "uniform_deviation": deviation}


@functools.partial(jax.jit, static_argnums=(0,))
@strictly
def accuracy(apply_fn, params, batches):
    """The fraction of correctly classified samples, from an exact count (a sum of the 1/N weights
    rounds, e.g. to 1.0000001 in float32)."""
    correct = sum(jnp.sum((w > 0) & (jnp.argmax(apply_fn(params, x), -1) == y))
                  for x, y, w in zip(*batches))
    dtype = curvature.params_dtype(params)
    return correct.astype(dtype) / num_samples(batches).astype(dtype)


def num_samples(batches: curvature.Batches) -> jax.Array:
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


@functools.partial(jax.jit, static_argnums=(0, 5))
@strictly
def grid_metrics(apply_fn, params, params0, batches, temperature, uso):
    return jax.vmap(lambda p, p0, t: log_metrics(apply_fn, p, p0, batches, t, uso))(
        params, params0, temperature)


@functools.partial(jax.jit, static_argnums=(0,))
@strictly
def grid_accuracy(apply_fn, params, batches):
    return jax.vmap(lambda p: accuracy(apply_fn, p, batches))(params)
