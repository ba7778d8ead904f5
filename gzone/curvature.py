"""Loss Hessian H and its Gauss–Newton terms, matrix-free and projected onto subspaces.

ICML paper, Eq. (4): for the full-batch loss (1/N) Σ_μ ℓ(f(θ, x_μ), y_μ),

    H = G-term + H-term,   G-term = (1/N) Σ_μ J_μᵀ M_μ J_μ,   H-term = (1/N) Σ_μ Σ_k [∇_z ℓ_μ]_k ∇²z_μk

with J_μ = ∂z_μ/∂θ (K, P), M_μ = (diag p_μ − p_μ p_μᵀ)/T² and ∇_z ℓ_μ = (p_μ − y_μ)/T.

How each is computed (all jit-compiled, data passed as arguments, chunked over samples):

* G-term: logit tangents u = J v (forward mode), then M in the centred form
  Σ_k p_k (u_k − p·u)(v_k − p·v)/T² (see :func:`gzone.objective.centred_quadratic_form`).
* H-term: directly, as the Hessian of Σ_μ stop_gradient(∇_z ℓ_μ)·z_μ — not as H − G, which loses
  all accuracy in float32 once the two nearly cancel (LeNet-5 at α = 100: relative error 2.2 vs 2e-5).
* Projected d×d matrices (Fort & Scherlis: H_d = Rᵀ H R): one vmapped forward-over-reverse pass over
  R's columns gives both the H-term columns and the logit tangents J R; G_d follows from J R almost
  for free, and H_d = G_d + H-term_d.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gzone import objective

ApplyFn = Callable[[Any, jax.Array], jax.Array]
Matvec = Callable[[jax.Array], jax.Array]

DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes of intermediate values one chunk may use


class ProjectedCurvature(NamedTuple):
    """Subspace-projected curvature RᵀXR (d, d) of the full-batch loss, plus loss and gradient."""

    hessian: jax.Array
    gterm: jax.Array
    hterm: jax.Array
    loss: jax.Array
    gradient_norm: jax.Array  # ‖∇_θ ℓ‖ in full parameter space


# ----------------------------------------------------------------------------- sample chunking


def _activation_floats_per_sample(apply_fn: ApplyFn, params: Any, x: jax.Array) -> int:
    """Number of intermediate values one sample produces in the forward pass (from its jaxpr)."""
    jaxpr = jax.make_jaxpr(apply_fn)(params, x[:1])
    return int(sum(math.prod(v.aval.shape) for eqn in jaxpr.jaxpr.eqns for v in eqn.outvars))


def auto_chunk_size(
    apply_fn: ApplyFn,
    params: Any,
    x: jax.Array,
    num_tangents: int = 1,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> int:
    """Samples per chunk so that a forward-over-reverse pass with ``num_tangents`` directions stays
    within ``memory_budget`` bytes (primal, tangent and backward values, a factor 4 of headroom)."""
    per_sample = _activation_floats_per_sample(apply_fn, params, x) * x.dtype.itemsize
    chunk = memory_budget // max(1, 4 * per_sample * (num_tangents + 1))
    return int(max(1, min(len(x), chunk)))


def _chunks(
    x: jax.Array, y: jax.Array, chunk_size: int
) -> list[tuple[jax.Array, jax.Array, jax.Array]]:
    """Equal-size chunks (x, y, w) with weights w = 1/N; the last is padded with w = 0 samples."""
    n = len(x)
    num_chunks = -(-n // chunk_size)
    pad = num_chunks * chunk_size - n
    weights = jnp.concatenate([jnp.full((n,), 1.0 / n, x.dtype), jnp.zeros((pad,), x.dtype)])
    x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
    y = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)])
    return [
        (x[i : i + chunk_size], y[i : i + chunk_size], weights[i : i + chunk_size])
        for i in range(0, len(x), chunk_size)
    ]


def _prepare(
    params: Any, x: jax.Array, y: jax.Array, chunk_size: int | None, num_tangents: int, apply_fn
) -> Iterator[tuple[jax.Array, jax.Array, jax.Array]]:
    dtype = ravel_pytree(params)[0].dtype
    x = jnp.asarray(x, dtype)
    y = jnp.asarray(y, jnp.int32)
    if chunk_size is None:
        chunk_size = auto_chunk_size(apply_fn, params, x, num_tangents)
    return _chunks(x, y, min(chunk_size, len(x)))


# ----------------------------------------------------------------------------- building blocks


def _weighted_loss(apply_fn, params, x, y, w, temperature):
    return objective.cross_entropy(apply_fn(params, x), y, temperature, w)


def _hterm_gradient_and_logits(apply_fn, params, x, y, w, temperature):
    """(Jᵀc, z) with c = stop_gradient(w ∇_z ℓ): its θ-derivative of the first output is the
    H-term (Eq. 4) and, at θ, Jᵀc is the loss gradient."""
    logits, pullback = jax.vjp(lambda p: apply_fn(p, x), params)
    c = jax.lax.stop_gradient(objective.logit_gradient(logits, y, temperature) * w[:, None])
    return pullback(c)[0], logits


def _gterm_from_tangents(jr_dnk, probs_nk, w, temperature):
    """Σ_μ w_μ (J_μR)ᵀ M_μ (J_μR), (d, d), in the centred form (Eq. 4's G-term)."""
    centred = objective.centre(probs_nk, jr_dnk)
    return jnp.einsum("ank,bnk,nk->ab", centred, centred, probs_nk * w[:, None]) / temperature**2


@functools.partial(jax.jit, static_argnums=0)
def _projected_chunk(apply_fn, params, basis, x, y, w, temperature):
    """Chunk sums of (G_d, H-term_d, loss, gradient) from one vmapped jvp over R's columns."""
    flat, unravel = ravel_pytree(params)
    with jax.default_matmul_precision("highest"):

        def column(r):
            return jax.jvp(
                lambda p: _hterm_gradient_and_logits(apply_fn, p, x, y, w, temperature),
                (params,),
                (unravel(r),),
            )

        (grad, logits), (hterm_cols, jr) = jax.vmap(
            column, in_axes=1, out_axes=((None, None), (0, 0))
        )(basis.astype(flat.dtype))
        hterm_cols = jax.vmap(lambda t: ravel_pytree(t)[0])(hterm_cols)  # (d, P)
        hterm = basis.T @ hterm_cols.T
        gterm = _gterm_from_tangents(jr, objective.probs(logits, temperature), w, temperature)
        loss = objective.cross_entropy(logits, y, temperature, w)
    return gterm, hterm, loss, ravel_pytree(grad)[0]


def _symmetrised(a: jax.Array) -> jax.Array:
    return (a + a.T) / 2


def projected(
    apply_fn: ApplyFn,
    params: Any,
    basis: jax.Array,
    x: jax.Array,
    y: jax.Array,
    temperature: float | jax.Array = 1.0,
    *,
    chunk_size: int | None = None,
) -> ProjectedCurvature:
    """Rᵀ H R, Rᵀ G R and Rᵀ H-term R (d, d) of the full-batch loss at ``params``.

    ``basis`` is (P, d), rows in the order of ``ravel_pytree(params)``; ``x`` (N, ...) and integer
    labels ``y`` (N,). Samples are processed in chunks of ``chunk_size`` (default: as many as
    fit a 2 GiB budget), each one jit-compiled pass; results are exact sums, independent of the
    chunking. Vmappable over leading axes of ``params`` and ``basis`` (several seeds at once).
    """
    num_params = ravel_pytree(params)[0].size
    if basis.ndim != 2 or basis.shape[0] != num_params:
        raise ValueError(
            f"basis must have shape (P, d) with P={num_params} parameters, got {basis.shape}"
        )
    if basis.shape[1] > num_params:
        raise ValueError(f"subspace dimension d={basis.shape[1]} exceeds P={num_params}")
    temperature = jnp.asarray(temperature, ravel_pytree(params)[0].dtype)
    gterm = hterm = loss = grad = 0.0
    for xc, yc, wc in _prepare(params, x, y, chunk_size, basis.shape[1], apply_fn):
        g, h, lo, gr = _projected_chunk(apply_fn, params, basis, xc, yc, wc, temperature)
        gterm, hterm, loss, grad = gterm + g, hterm + h, loss + lo, grad + gr
    gterm, hterm = _symmetrised(gterm), _symmetrised(hterm)
    return ProjectedCurvature(gterm + hterm, gterm, hterm, loss, jnp.linalg.norm(grad))


# ----------------------------------------------------------------------------- matrix-free operators


@functools.partial(jax.jit, static_argnums=0)
def _hessian_vp_chunk(apply_fn, params, v, x, y, w, temperature):
    unravel = ravel_pytree(params)[1]
    with jax.default_matmul_precision("highest"):
        grad_fn = jax.grad(lambda p: _weighted_loss(apply_fn, p, x, y, w, temperature))
        return ravel_pytree(jax.jvp(grad_fn, (params,), (unravel(v),))[1])[0]


@functools.partial(jax.jit, static_argnums=0)
def _gterm_vp_chunk(apply_fn, params, v, x, y, w, temperature):
    unravel = ravel_pytree(params)[1]
    with jax.default_matmul_precision("highest"):
        logits, jvp_fn = jax.linearize(lambda p: apply_fn(p, x), params)
        u = jvp_fn(unravel(v))
        p = objective.probs(logits, temperature)
        mu = p * objective.centre(p, u) * w[:, None] / temperature**2
        (out,) = jax.linear_transpose(jvp_fn, params)(mu)
        return ravel_pytree(out)[0]


@functools.partial(jax.jit, static_argnums=0)
def _hterm_vp_chunk(apply_fn, params, v, x, y, w, temperature):
    unravel = ravel_pytree(params)[1]
    with jax.default_matmul_precision("highest"):
        tangent = jax.jvp(
            lambda p: _hterm_gradient_and_logits(apply_fn, p, x, y, w, temperature)[0],
            (params,),
            (unravel(v),),
        )[1]
        return ravel_pytree(tangent)[0]


def _operator(chunk_fn, apply_fn, params, x, y, temperature, chunk_size) -> Matvec:
    chunks = _prepare(params, x, y, chunk_size, 1, apply_fn)
    dtype = ravel_pytree(params)[0].dtype
    temperature = jnp.asarray(temperature, dtype)

    def matvec(v: jax.Array) -> jax.Array:
        v = jnp.asarray(v, dtype)
        return sum(chunk_fn(apply_fn, params, v, xc, yc, wc, temperature) for xc, yc, wc in chunks)

    return matvec


def hessian_operator(apply_fn, params, x, y, temperature=1.0, *, chunk_size=None) -> Matvec:
    """v ↦ H v on flat parameter vectors (jvp of the full-batch gradient)."""
    return _operator(_hessian_vp_chunk, apply_fn, params, x, y, temperature, chunk_size)


def gterm_operator(apply_fn, params, x, y, temperature=1.0, *, chunk_size=None) -> Matvec:
    """v ↦ G v = (1/N) Σ_μ J_μᵀ M_μ J_μ v (linearize → centred M → transpose; Eq. 4)."""
    return _operator(_gterm_vp_chunk, apply_fn, params, x, y, temperature, chunk_size)


def hterm_operator(apply_fn, params, x, y, temperature=1.0, *, chunk_size=None) -> Matvec:
    """v ↦ H-term v, computed directly (Eq. 4's second term), not as H v − G v."""
    return _operator(_hterm_vp_chunk, apply_fn, params, x, y, temperature, chunk_size)


OPERATORS = {"hessian": hessian_operator, "gterm": gterm_operator, "hterm": hterm_operator}


# ----------------------------------------------------------------------------- loss and gradient


@functools.partial(jax.jit, static_argnums=0)
def _loss_and_grad_chunk(apply_fn, params, x, y, w, temperature):
    return jax.value_and_grad(lambda p: _weighted_loss(apply_fn, p, x, y, w, temperature))(params)


def loss_and_gradient(apply_fn, params, x, y, temperature=1.0, *, chunk_size=None):
    """Full-batch loss and flat gradient (P,), chunked over samples."""
    dtype = ravel_pytree(params)[0].dtype
    temperature = jnp.asarray(temperature, dtype)
    loss, grad = 0.0, 0.0
    for xc, yc, wc in _prepare(params, x, y, chunk_size, 1, apply_fn):
        lo, gr = _loss_and_grad_chunk(apply_fn, params, xc, yc, wc, temperature)
        loss, grad = loss + lo, grad + ravel_pytree(gr)[0]
    return loss, grad
