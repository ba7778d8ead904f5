"""Random low-dimensional subspaces θ(θ̂) = θ0 + R θ̂ of parameter space (Fort & Scherlis, Sec. 2.1).

A basis R is a (P, d) array whose rows follow the order of
``jax.flatten_util.ravel_pytree(params)``. Two kinds:

* ``orthonormal``: exactly orthonormal columns, the Q factor of a Gaussian matrix (RᵀR = I_d).
* ``sparse``: the near-orthogonal ±1 columns of Fort & Scherlis and of the ICML authors' code
  (``get_random_ortho_matrix``): every entry is non-zero with probability 1/√P, with a random
  sign; each column is then normalised to unit length. Columns are orthogonal only up to
  O(P^-1/4) overlaps.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

BASIS_KINDS = ("orthonormal", "sparse")


def _check_dims(num_params: int, dim: int) -> None:
    if not 1 <= dim <= num_params:
        raise ValueError(
            f"subspace dimension d={dim} must be between 1 and the number of parameters "
            f"P={num_params}; choose a smaller dim"
        )


def orthonormal_basis(key: jax.Array, num_params: int, dim: int, dtype: Any = jnp.float32) -> jax.Array:
    """(P, d) basis with exactly orthonormal columns: QR of a standard Gaussian matrix."""
    _check_dims(num_params, dim)
    return _orthonormal_basis(key, num_params, dim, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _orthonormal_basis(key: jax.Array, num_params: int, dim: int, dtype: Any) -> jax.Array:
    q, r = jnp.linalg.qr(jax.random.normal(key, (num_params, dim), dtype))
    return q * jnp.sign(jnp.diagonal(r))  # fixes the signs so the basis is Haar-distributed


def sparse_basis(key: jax.Array, num_params: int, dim: int, dtype: Any = jnp.float32) -> jax.Array:
    """(P, d) sparse ±1 basis at density 1/√P with unit-norm columns (Fort & Scherlis)."""
    _check_dims(num_params, dim)
    return _sparse_basis(key, num_params, dim, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _sparse_basis(key: jax.Array, num_params: int, dim: int, dtype: Any) -> jax.Array:
    key_mask, key_sign, key_fallback = jax.random.split(key, 3)
    # float32 probabilities: the same draws whether or not JAX runs in 64-bit mode
    mask = jax.random.bernoulli(key_mask, jnp.float32(1.0 / num_params**0.5), (num_params, dim))
    # a column left empty (probability ≈ exp(−√P)) gets one random entry instead
    fallback = jax.nn.one_hot(jax.random.randint(key_fallback, (dim,), 0, num_params), num_params).T
    mask = jnp.where(mask.any(axis=0, keepdims=True), mask, fallback > 0)
    signs = jnp.where(jax.random.bernoulli(key_sign, jnp.float32(0.5), (num_params, dim)), 1.0, -1.0)
    columns = (mask * signs).astype(dtype)
    return columns / jnp.linalg.norm(columns, axis=0, keepdims=True)


def random_basis(
    key: jax.Array, num_params: int, dim: int, kind: str = "orthonormal", dtype: Any = jnp.float32
) -> jax.Array:
    """Random (P, d) basis of the given kind (``orthonormal`` or ``sparse``)."""
    if kind == "orthonormal":
        return orthonormal_basis(key, num_params, dim, dtype)
    if kind == "sparse":
        return sparse_basis(key, num_params, dim, dtype)
    raise ValueError(f"unknown basis kind {kind!r}; choose one of {', '.join(BASIS_KINDS)}")


def subspace_params(params: Any, basis: jax.Array, theta_hat: jax.Array) -> Any:
    """θ0 + R θ̂ as a parameter pytree like ``params`` (Fort & Scherlis, Sec. 2.1)."""
    flat, unravel = ravel_pytree(params)
    return unravel(flat + basis @ theta_hat.astype(flat.dtype))


def basis_tree(params: Any, basis: jax.Array) -> Any:
    """R (P, d) as a pytree like ``params`` whose leaves are (*leaf.shape, d): R's rows split in
    ``ravel_pytree`` order. No transpose is needed (each leaf is a contiguous block of rows), so
    vmapping over the trailing axis is cheap; ``unravel(R[:, i])`` is the i-th slice."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    dtype = ravel_pytree(params)[0].dtype
    if basis.ndim != 2 or basis.shape[0] != sum(leaf.size for leaf in leaves):
        raise ValueError(f"basis must have shape (P, d) with P={sum(leaf.size for leaf in leaves)}, got {basis.shape}")
    offsets = [0]
    for leaf in leaves:
        offsets.append(offsets[-1] + leaf.size)
    blocks = [
        basis[start:stop].astype(dtype).reshape(*leaf.shape, basis.shape[1])
        for leaf, start, stop in zip(leaves, offsets[:-1], offsets[1:])
    ]
    return jax.tree_util.tree_unflatten(treedef, blocks)


def layer_metric(params: Any, scheme: str = "xavier") -> jax.Array:
    """The diagonal per-layer metric M of Fort & Scherlis (Sec. 2.1) as a (P,) vector in
    ``ravel_pytree(params)`` order: every coordinate of a kernel gets the standard deviation
    ``scheme`` initialises that kernel with (:func:`gzone.models.init_std`), every other
    coordinate of a layer (its bias) that of the layer's kernel; then M is normalised to root-mean-
    square 1, so that ‖M R θ̂‖ ≈ ‖θ̂‖ and only the per-layer *shape* is imposed. With θ = M φ, a
    draw of ``scheme`` is isotropic in φ: each weight matrix sits on its own shell."""
    from gzone import models

    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    kernel_std = {path[:-1]: models.init_std(leaf.shape, scheme)
                  for path, leaf in leaves if getattr(path[-1], "key", None) == "kernel"}
    if not kernel_std:
        raise ValueError("params have no 'kernel' leaves: layer_metric needs Flax Dense/Conv layers")
    dtype = ravel_pytree(params)[0].dtype
    parts = []
    for path, leaf in leaves:
        std = kernel_std.get(path[:-1])
        if std is None:
            raise ValueError(f"leaf {jax.tree_util.keystr(path)} has no kernel in its layer to take "
                             f"its metric from")
        parts.append(jnp.full((leaf.size,), std, dtype))
    metric = jnp.concatenate(parts)
    return metric / jnp.sqrt(jnp.mean(metric**2))
