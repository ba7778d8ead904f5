"""Network building blocks of the logit Jacobian J = ∂z/∂θ (ICML paper Sec. 4), chunked over samples.

* :func:`logits_of`: logits z (N, K), forward passes in chunks.
* :func:`logit_tangents`: logits and the per-sample logit gradients in a subspace, J_μ R (N, K, d)
  — one vmapped ``jax.jvp`` over R's columns per chunk (forward mode only).
* :func:`linearized`: the first-order Taylor model z(θ0) + J(θ0)(θ − θ0) as an apply function of
  :func:`linearization_point` variables, trainable by :mod:`gzone.training` like any network
  (the lazy-regime check of ICML App. E).
* :func:`class_mean_logit_gradients`: the class means c_k = (1/N) Σ_μ ∇θ z_k(x_μ) in full
  parameter space, (K, P) — K vector-Jacobian products of the mean logit per chunk.

Each has one jit-compiled chunk kernel (``apply_fn`` static); chunks are padded to one shape by
:func:`gzone.curvature.padded_chunks`, so one compiled program serves every chunk. The samples may
also be given as :class:`gzone.curvature.Batches` laid out once (their labels are not used).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gzone import curvature, precision


def sample_chunk_size(apply_fn, params: Any, x: jax.Array, num_tangents: int,
                      chunk_size: int | None) -> int:
    """Samples per chunk: ``chunk_size``, or (None) :func:`gzone.curvature.auto_chunk_size` for
    ``num_tangents`` tangent directions; clipped to [1, N]."""
    if chunk_size is None:
        chunk_size = curvature.auto_chunk_size(apply_fn, params, x, num_tangents)
    return int(max(1, min(chunk_size, len(x))))


@functools.partial(jax.jit, static_argnums=0)
def _tangent_chunk(apply_fn, params, basis, x):
    flat, unravel = ravel_pytree(params)
    with precision.strict():

        def column(r):
            return jax.jvp(lambda p: apply_fn(p, x), (params,), (unravel(r),))

        logits, tangents = jax.vmap(column, in_axes=1, out_axes=(None, 0))(basis.astype(flat.dtype))
    return logits, jnp.transpose(tangents, (1, 2, 0))


def _sample_chunks(apply_fn, params: Any, x: jax.Array | curvature.Batches, num_tangents: int,
                   chunk_size: int | None) -> tuple[jax.Array, jax.Array, int]:
    """(xs (C, B, ...), ws (C, B), N): the samples in chunks, laid out here unless already
    :class:`gzone.curvature.Batches` (then ``chunk_size`` must be None)."""
    if isinstance(x, curvature.Batches):
        if chunk_size is not None:
            raise ValueError("chunk_size does not apply to Batches, which are already chunked")
        return x.x, x.w, int(jnp.count_nonzero(x.w))
    xs, _, ws = curvature.padded_chunks(
        x, None, sample_chunk_size(apply_fn, params, x, num_tangents, chunk_size))
    return xs, ws, len(x)


def logit_tangents(
    apply_fn, params: Any, basis: jax.Array, x: jax.Array | curvature.Batches, *,
    chunk_size: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Logits (N, K) and per-sample logit gradients in the subspace, J_μ R (N, K, d).

    One vmapped ``jax.jvp`` over R's columns per chunk of samples (forward mode only)."""
    xs, _, n = _sample_chunks(apply_fn, params, x, basis.shape[1], chunk_size)
    parts = [_tangent_chunk(apply_fn, params, basis, xc) for xc in xs]
    return (jnp.concatenate([p[0] for p in parts])[:n], jnp.concatenate([p[1] for p in parts])[:n])


@functools.partial(jax.jit, static_argnums=0)
def _logits_chunk(apply_fn, params, x):
    return apply_fn(params, x)


def logits_of(apply_fn, params: Any, x: jax.Array, *, chunk_size: int = 1024) -> jax.Array:
    """Logits (N, K), forward passes in chunks."""
    cs = int(min(chunk_size, len(x)))
    xs, _, _ = curvature.padded_chunks(x, None, cs)
    return jnp.concatenate([_logits_chunk(apply_fn, params, xc) for xc in xs])[: len(x)]


@functools.partial(jax.jit, static_argnums=0)
def _class_mean_chunk(apply_fn, params, x, w):
    logits, pullback = jax.vjp(lambda p: apply_fn(p, x), params)
    k = logits.shape[-1]
    cotangents = w[None, :, None] * jnp.eye(k, dtype=logits.dtype)[:, None, :]  # (K, n, K)
    (grads,) = jax.vmap(pullback)(cotangents)
    return jax.vmap(lambda g: ravel_pytree(g)[0])(grads)  # (K, P)


def class_mean_logit_gradients(
    apply_fn, params: Any, x: jax.Array | curvature.Batches, *, chunk_size: int | None = None
) -> jax.Array:
    """Class means c_k = (1/N) Σ_μ ∇θ z_k(x_μ) in full parameter space, (K, P) (Sec. 4).

    By linearity c_k = ∇θ of the mean logit (1/N) Σ_μ z_k(x_μ): one vmapped vjp with the K unit
    cotangents per chunk of samples instead of N·K per-sample gradients."""
    xs, ws, _ = _sample_chunks(apply_fn, params, x, 1, chunk_size)
    return sum(_class_mean_chunk(apply_fn, params, xc, wc) for xc, wc in zip(xs, ws))


@functools.cache
def linearized(apply_fn):
    """The linearisation of ``apply_fn`` around an anchor θ0 — f_lin(θ, x) = f(θ0, x) +
    J(θ0, x)(θ − θ0), one ``jax.jvp`` — as an apply function ``(variables, x)`` of
    ``{"theta": θ, "anchor": θ0}`` (:func:`linearization_point`). The anchor is behind
    ``stop_gradient``: its gradient is zero, so an optimizer leaves it where it is and only θ is
    trained; because the anchor is an argument rather than a constant, one compiled program
    serves every θ0 and a grid of linearised runs vmaps like one of networks. One function per
    ``apply_fn`` (cached), so jit caches keyed on it are reused."""

    def apply(variables, x):
        anchor = jax.lax.stop_gradient(variables["anchor"])
        delta = jax.tree_util.tree_map(jnp.subtract, variables["theta"], anchor)
        z0, dz = jax.jvp(lambda p: apply_fn(p, x), (anchor,), (delta,))
        return z0 + dz

    return apply


def linearization_point(params0: Any) -> dict[str, Any]:
    """The variables of :func:`linearized` at θ = θ0: ``{"theta": θ0, "anchor": θ0}``."""
    return {"theta": params0, "anchor": jax.tree_util.tree_map(jnp.array, params0)}

