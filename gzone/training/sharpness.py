"""The sharpness of a batch of runs at one log, all points at once (ICML Sec. 5, Fig. 8's
sharpness): one ``jax.vmap``-ped Lanczos over the points, warm-started from each point's previous
eigenvector, each point stopped by the rule of :func:`gzone.training.sharpness_of` — after the
first step m whose Ritz residual estimate |β_m s_m| is ≤ tol·|θ| — and frozen from then on while
the others go on, so every point gets exactly the estimate it would get alone (to rounding).

* ``fused`` (GPUs, and CPU models without convolutions): the whole iteration is one compiled
  ``lax.while_loop`` inside the log's program, which runs while any point is still going; with the
  points sharded over devices each device iterates its own — the log costs one host sync.
* ``host`` (convolutional models on CPU, where XLA runs convolutions slowly inside loops,
  PERFORMANCE-NOTES): a Python loop over one compiled, vmapped step, reading one flag per step.

The stopping test runs on the device in the parameters' dtype (the single-point estimate's runs on
the host in float64: on an eigenvalue right at the tolerance the two may stop a step apart, which
changes the estimate by far less than tol·|λ|). Products at full float32 (:mod:`gzone.precision`).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gzone import curvature, lanczos
from gzone.lanczos.recurrence import (
    _decouple_tail,
    _lanczos_init,
    _lanczos_step,
    _select_ritz_body,
    tridiagonal,
)
from gzone.precision import STRICT


class Progress(NamedTuple):
    """One point's Lanczos run so far (a leading axis of points when batched)."""

    steps: jax.Array  # m, the steps taken
    done: jax.Array  # stopped: converged, or not measured at all
    state: Any  # the recurrence's state (basis, alphas, betas ...)


def _converged(alphas: jax.Array, betas: jax.Array, m: jax.Array, tol: float) -> jax.Array:
    """Whether the largest-magnitude Ritz pair of T_m has |β_m s_m| ≤ tol·|θ| (the rule of
    :func:`gzone.lanczos.eigsh` with ``which="LM"``, ``k=1``)."""
    a, b = _decouple_tail(alphas, betas, m, "LM")
    t = tridiagonal(a, b)
    theta, s = jnp.linalg.eigh((t + t.T) / 2)
    i = jnp.argmax(jnp.abs(theta))
    estimate = jnp.abs(betas[m - 1] * s[m - 1, i])
    return estimate <= tol * jnp.abs(theta[i])


def _start(num_iters: int, params: Any, v0: jax.Array, warm: jax.Array, active: jax.Array,
           key: jax.Array) -> Progress:
    """One point's start: its previous eigenvector (``warm``) or a Gaussian vector from ``key``
    (the draw of :func:`gzone.lanczos.eigsh`); a point not ``active`` starts done."""
    dtype = curvature.params_dtype(params)
    key_start, key_restart = jax.random.split(key)
    fresh = lanczos.probe_vector(key_start, 0, v0.shape[0], dtype, "gaussian")
    v = jnp.where(warm, v0.astype(dtype), fresh)
    return Progress(jnp.int32(0), ~active, _lanczos_init(v, key_restart, num_iters, dtype))


def _advance(apply_fn: Any, num_iters: int, tol: float, progress: Progress, params: Any,
             batches: curvature.Batches, temperature: jax.Array) -> Progress:
    """One Lanczos step of one point, or nothing once it is done (or has taken ``num_iters``)."""
    matvec = curvature.matvec("hessian", apply_fn)
    dtype = curvature.params_dtype(params)
    finished = progress.done | (progress.steps >= num_iters)
    j = jnp.minimum(progress.steps, num_iters - 1)
    state = _lanczos_step(matvec, dtype, STRICT, j, progress.state, params, batches, temperature)
    m = j + 1
    new = Progress(m, _converged(state.alphas, state.betas, m, tol), state)
    return jax.tree_util.tree_map(lambda old, fresh: jnp.where(finished, old, fresh), progress, new)


def _finish(apply_fn: Any, progress: Progress, params: Any, batches: curvature.Batches,
            temperature: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(λ, ‖Hv − λv‖, v, Hessian-vector products) of one point's run (as ``sharpness_of``)."""
    matvec = curvature.matvec("hessian", apply_fn)
    dtype = curvature.params_dtype(params)
    state = progress.state
    with jax.default_matmul_precision(STRICT):
        alphas, betas = _decouple_tail(state.alphas, state.betas, progress.steps, "LM")
        theta, vectors = _select_ritz_body(alphas, betas, state.basis, "LM", 1)
        v = vectors[:, 0]
        residual = jnp.linalg.norm(matvec(v.astype(dtype), params, batches, temperature).astype(v.dtype)
                                   - theta[0] * v)
    return theta[0], residual, v, progress.steps + 1


def _batched(fn: Any, *leading: bool) -> Any:
    """``fn`` vmapped over the leading axis of the arguments marked True."""
    return jax.vmap(fn, in_axes=tuple(0 if b else None for b in leading))


@functools.partial(jax.jit, static_argnums=(0,))
def start(num_iters: int, params: Any, vectors: jax.Array, warm: jax.Array, active: jax.Array,
          key: jax.Array) -> Progress:
    """Every point's start (:func:`_start`), points on the leading axis."""
    return _batched(functools.partial(_start, num_iters), True, True, True, True, False)(
        params, vectors, warm, active, key)


@functools.partial(jax.jit, static_argnums=(0, 1, 2), donate_argnums=(3,))
def advance(apply_fn: Any, num_iters: int, tol: float, progress: Progress, params: Any,
            batches: curvature.Batches, temperature: jax.Array) -> Progress:
    """One step of every point still going (the ``host`` driver's program)."""
    return _batched(functools.partial(_advance, apply_fn, num_iters, tol), True, True, False, True)(
        progress, params, batches, temperature)


@functools.partial(jax.jit, static_argnums=(0,))
def finish(apply_fn: Any, progress: Progress, params: Any, batches: curvature.Batches,
           temperature: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Every point's estimate (:func:`_finish`)."""
    return _batched(functools.partial(_finish, apply_fn), True, True, False, True)(
        progress, params, batches, temperature)


def _running(progress: Progress, num_iters: int) -> jax.Array:
    return jnp.any(~progress.done & (progress.steps < num_iters))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def fused(apply_fn: Any, num_iters: int, tol: float, params: Any, batches: curvature.Batches,
          temperature: jax.Array, vectors: jax.Array, warm: jax.Array, active: jax.Array,
          key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Every point's sharpness in one program: a ``lax.while_loop`` over the vmapped step while
    any point is still going."""
    progress = start(num_iters, params, vectors, warm, active, key)
    step = _batched(functools.partial(_advance, apply_fn, num_iters, tol), True, True, False, True)
    progress = jax.lax.while_loop(lambda p: _running(p, num_iters),
                                  lambda p: step(p, params, batches, temperature), progress)
    return finish(apply_fn, progress, params, batches, temperature)


def grid_sharpness(apply_fn: Any, params: Any, batches: curvature.Batches, temperature: jax.Array,
                   vectors: jax.Array, warm: jax.Array, active: jax.Array, key: jax.Array, *,
                   num_iters: int, tol: float, driver: str
                   ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(λ, ‖Hv − λv‖, v, Hessian-vector products) of every point of a batch (leading axis G of
    ``params``, ``temperature`` (G,), ``vectors`` (G, P) the previous eigenvectors, ``warm`` (G,)
    whether there is one, ``active`` (G,) whether to measure the point at all): at most
    ``num_iters`` Lanczos steps each, stopped at ``tol`` (module docstring). ``driver``:
    ``"scan"`` fuses the loop (one program), ``"host"`` loops on the host. Values of points not
    ``active`` are meaningless (the caller masks them)."""
    num_iters = min(num_iters, int(vectors.shape[1]))
    if driver != "host":
        return fused(apply_fn, num_iters, float(tol), params, batches, temperature, vectors, warm,
                     active, key)
    progress = start(num_iters, params, vectors, warm, active, key)
    for _ in range(num_iters):
        if not bool(_running(progress, num_iters)):
            break
        progress = advance(apply_fn, num_iters, float(tol), progress, params, batches, temperature)
    return finish(apply_fn, progress, params, batches, temperature)


# ----------------------------------------------------------------------------- Adam's preconditioner

#: optax.adam's defaults, which :func:`gzone.training.step.make_optimizer` keeps
ADAM_B2, ADAM_EPS = 0.999, 1e-8


def adam_preconditioner(state: Any) -> jax.Array:
    """Adam's diagonal preconditioner d = √v̂ + ε of each run, (G, P) flat like
    ``ravel_pytree(params)``, from a vmapped optax state: v̂ = ν / (1 − β₂ᵗ), the bias-corrected
    second moment (optax.scale_by_adam); the update is −η m̂ / d. NaN before the first step (t = 0:
    no second moment yet)."""
    import optax

    found = [s for s in jax.tree_util.tree_leaves(
        state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
        if isinstance(s, optax.ScaleByAdamState)]
    if not found:
        raise ValueError("the optimizer state holds no Adam moments (optimizer='adam' only)")
    adam = found[0]
    nu = jax.vmap(lambda tree: ravel_pytree(tree)[0])(adam.nu)
    count = jnp.asarray(adam.count, nu.dtype)
    correction = 1 - ADAM_B2 ** count
    vhat = nu / jnp.where(count > 0, correction, jnp.nan)[:, None]
    return jnp.sqrt(vhat) + ADAM_EPS


@functools.cache
def _preconditioned_matvec(apply_fn: Any) -> Any:
    hvp = curvature.matvec("hessian", apply_fn)

    def matvec(v: jax.Array, params: Any, batches: curvature.Batches, temperature: jax.Array,
               scale: jax.Array) -> jax.Array:
        return scale * hvp(scale * v, params, batches, temperature)

    return matvec


def preconditioned_sharpness(apply_fn: Any, params: Any, batches: curvature.Batches,
                             temperatures: jax.Array, state: Any, going: jax.Array, key: jax.Array,
                             num_iters: int, num: int) -> jax.Array:
    """Adam's preconditioned sharpness of each of the first ``num`` runs: the top eigenvalue of
    D^{-1/2} H D^{-1/2} (D = diag of :func:`adam_preconditioner`; the eigenvalues of D⁻¹H, whose
    stability threshold for Adam is (2 + 2β₁)/((1 − β₁)η) = 38/η, Cohen et al. 2022), by
    ``num_iters`` Lanczos steps on the matrix-free product; NaN for stopped runs and at step 0.
    One Lanczos per run (the same compiled program for all)."""
    scale = jax.lax.rsqrt(adam_preconditioner(state))
    size = scale.shape[1]
    out = []
    for j in range(num):
        run = jax.tree_util.tree_map(lambda a, j=j: a[j], params)
        op = lanczos.Operator(_preconditioned_matvec(apply_fn),
                              (run, batches, temperatures[j], scale[j]))
        res = lanczos.eigsh(op, size, 1, key=jax.random.fold_in(key, j),
                            num_iters=min(num_iters, size), which="LA")
        out.append(res.eigenvalues[0])
    lam = jnp.stack(out)
    finite = jnp.all(jnp.isfinite(scale[:num]), axis=1)
    return jnp.where(going[:num] & finite, lam, jnp.nan)
