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

The same machinery, with the operator v -> D^{-1/2} H D^{-1/2} v and the largest algebraic Ritz
value, gives Adam's preconditioned sharpness (:func:`preconditioned_sharpness`).
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


def _which(scale: Any) -> str:
    """The Ritz value sought: the largest-magnitude one of H (the sharpness), the largest one of
    D^{-1/2} H D^{-1/2} (Adam's preconditioned sharpness, with the (P,) ``scale`` D^{-1/2})."""
    return "LM" if scale is None else "LA"


def _operator(apply_fn: Any, scale: Any) -> Any:
    """v -> H v, or v -> D^{-1/2} H D^{-1/2} v with ``scale`` = D^{-1/2} (one Hessian-vector
    product either way, :func:`gzone.curvature.matvec`)."""
    hvp = curvature.matvec("hessian", apply_fn)
    if scale is None:
        return hvp
    return lambda v, params, batches, temperature: scale * hvp(scale * v, params, batches,
                                                               temperature)


def _converged(alphas: jax.Array, betas: jax.Array, m: jax.Array, tol: float,
               which: str = "LM") -> jax.Array:
    """Whether the selected (``which``: ``"LM"`` largest magnitude, ``"LA"`` largest) Ritz pair
    of T_m has |β_m s_m| ≤ tol·|θ| (the rule of :func:`gzone.lanczos.eigsh` with ``k=1``)."""
    a, b = _decouple_tail(alphas, betas, m, which)
    t = tridiagonal(a, b)
    theta, s = jnp.linalg.eigh((t + t.T) / 2)
    i = jnp.argmax(jnp.abs(theta)) if which == "LM" else jnp.argmax(theta)
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
             batches: curvature.Batches, temperature: jax.Array, scale: Any = None) -> Progress:
    """One Lanczos step of one point, or nothing once it is done (or has taken ``num_iters``)."""
    matvec = _operator(apply_fn, scale)
    dtype = curvature.params_dtype(params)
    finished = progress.done | (progress.steps >= num_iters)
    j = jnp.minimum(progress.steps, num_iters - 1)
    state = _lanczos_step(matvec, dtype, STRICT, j, progress.state, params, batches, temperature)
    m = j + 1
    new = Progress(m, _converged(state.alphas, state.betas, m, tol, _which(scale)), state)
    return jax.tree_util.tree_map(lambda old, fresh: jnp.where(finished, old, fresh), progress, new)


def _finish(apply_fn: Any, progress: Progress, params: Any, batches: curvature.Batches,
            temperature: jax.Array, scale: Any = None
            ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(λ, ‖Av − λv‖, v, Hessian-vector products) of one point's run (as ``sharpness_of``; A the
    operator of :func:`_operator`)."""
    matvec = _operator(apply_fn, scale)
    dtype = curvature.params_dtype(params)
    state = progress.state
    with jax.default_matmul_precision(STRICT):
        alphas, betas = _decouple_tail(state.alphas, state.betas, progress.steps, _which(scale))
        theta, vectors = _select_ritz_body(alphas, betas, state.basis, _which(scale), 1)
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
            batches: curvature.Batches, temperature: jax.Array, scale: Any = None) -> Progress:
    """One step of every point still going (the ``host`` driver's program)."""
    return _batched(functools.partial(_advance, apply_fn, num_iters, tol), True, True, False, True,
                    True)(progress, params, batches, temperature, scale)


@functools.partial(jax.jit, static_argnums=(0,))
def finish(apply_fn: Any, progress: Progress, params: Any, batches: curvature.Batches,
           temperature: jax.Array, scale: Any = None
           ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Every point's estimate (:func:`_finish`)."""
    return _batched(functools.partial(_finish, apply_fn), True, True, False, True, True)(
        progress, params, batches, temperature, scale)


def _running(progress: Progress, num_iters: int) -> jax.Array:
    return jnp.any(~progress.done & (progress.steps < num_iters))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def fused(apply_fn: Any, num_iters: int, tol: float, params: Any, batches: curvature.Batches,
          temperature: jax.Array, vectors: jax.Array, warm: jax.Array, active: jax.Array,
          key: jax.Array, scale: Any = None) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Every point's sharpness in one program: a ``lax.while_loop`` over the vmapped step while
    any point is still going."""
    progress = start(num_iters, params, vectors, warm, active, key)
    step = _batched(functools.partial(_advance, apply_fn, num_iters, tol), True, True, False, True,
                    True)
    progress = jax.lax.while_loop(lambda p: _running(p, num_iters),
                                  lambda p: step(p, params, batches, temperature, scale), progress)
    return finish(apply_fn, progress, params, batches, temperature, scale)


def grid_sharpness(apply_fn: Any, params: Any, batches: curvature.Batches, temperature: jax.Array,
                   vectors: jax.Array, warm: jax.Array, active: jax.Array, key: jax.Array, *,
                   num_iters: int, tol: float, driver: str, scale: jax.Array | None = None
                   ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(λ, ‖Hv − λv‖, v, Hessian-vector products) of every point of a batch (leading axis G of
    ``params``, ``temperature`` (G,), ``vectors`` (G, P) the previous eigenvectors, ``warm`` (G,)
    whether there is one, ``active`` (G,) whether to measure the point at all): at most
    ``num_iters`` Lanczos steps each, stopped at ``tol`` (module docstring). ``driver``:
    ``"scan"`` fuses the loop (one program), ``"host"`` loops on the host. Values of points not
    ``active`` are meaningless (the caller masks them). With a (G, P) ``scale`` s, the same for
    the largest (algebraic) eigenvalue of diag(s) H diag(s) (:func:`preconditioned_sharpness`)."""
    num_iters = min(num_iters, int(vectors.shape[1]))
    if driver != "host":
        return fused(apply_fn, num_iters, float(tol), params, batches, temperature, vectors, warm,
                     active, key, scale)
    progress = start(num_iters, params, vectors, warm, active, key)
    for _ in range(num_iters):
        if not bool(_running(progress, num_iters)):
            break
        progress = advance(apply_fn, num_iters, float(tol), progress, params, batches, temperature,
                           scale)
    return finish(apply_fn, progress, params, batches, temperature, scale)


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


def preconditioned_sharpness(apply_fn: Any, params: Any, batches: curvature.Batches,
                             temperature: jax.Array, state: Any, active: jax.Array, key: jax.Array,
                             *, num_iters: int, tol: float, driver: str) -> jax.Array:
    """Adam's preconditioned sharpness of every run of a batch: the largest eigenvalue of
    D^{-1/2} H D^{-1/2} (D = diag of :func:`adam_preconditioner` read from the vmapped optax
    ``state``), i.e. of D⁻¹H, the matrix whose top eigenvalue Adam's stability threshold
    (2 + 2β₁)/((1 − β₁)η) = 38/η bounds (Cohen et al. 2022, "Adaptive gradient methods at the edge
    of stability"). Matrix-free: :func:`grid_sharpness` on v -> D^{-1/2} H D^{-1/2} v (one
    Hessian-vector product per step, one vmapped Lanczos for the batch, each run from a fresh
    Gaussian vector and stopped at ``tol`` like the sharpness). NaN for runs not ``active`` and
    before the first step (t = 0: Adam has no second moment yet, D is undefined)."""
    d = adam_preconditioner(state)
    defined = jnp.all(jnp.isfinite(d), axis=1)
    going = active & defined
    scale = jnp.where(defined[:, None], jax.lax.rsqrt(jnp.where(defined[:, None], d, 1)), 1)
    lam = grid_sharpness(apply_fn, params, batches, temperature, jnp.zeros_like(scale),
                         jnp.zeros(going.shape, bool), going, key, num_iters=num_iters, tol=tol,
                         driver=driver, scale=scale)[0]
    return jnp.where(going, lam, jnp.nan)
