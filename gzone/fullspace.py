"""Curvature in the full parameter space (d = P): nothing is materialised, everything is matrix-free.

For each term X ∈ {H, G-term, H-term} of Eq. (4) of the ICML paper:

* **positive curvature** Tr X / ‖X‖_F (Eq. 2) by Hutchinson's estimator (Hutchinson 1989) with a
  delta-method standard error (:func:`ratio_estimate`);
* **extreme eigenvalues** — the top-k (largest algebraic), the bottom-k and the spectral norm
  ‖X‖₂ = max |λ| — as Ritz values of one Lanczos run (:func:`gzone.lanczos.lanczos_tridiag`, full
  reorthogonalisation), each with its true residual norm ‖X y − θ y‖;
* optionally the **spectral density** by stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017;
  Ghorbani, Krishnan & Xiao 2019), whose first probe is that same Lanczos run.

Compile once, sweep many α. :func:`operator` returns, per (term, apply_fn), one cached function
``matvec(v, params, xs, ys, ws, temperature)``; the data chunks (:func:`stack_chunks`) and the
parameters travel as arguments. Lanczos, Hutchinson and the residuals jit-compile their steps with
the matvec as a static argument, so a sweep over α and T (new parameter *values*, same shapes)
reuses every compiled step.

Cost per term: ``num_iters · max(1, density_probes) + num_probes + 2·top_k`` products X v.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gzone import curvature
from gzone import lanczos as lz

Array = jax.Array
ApplyFn = Callable[[Any, Array], Array]
Chunks = tuple[Array, Array, Array]  # xs (C, B, ...), ys (C, B), ws (C, B)

TERMS = ("hessian", "gterm", "hterm")
_CHUNK_PRODUCTS = {
    "hessian": curvature.hessian_vp_chunk,
    "gterm": curvature.gterm_vp_chunk,
    "hterm": curvature.hterm_vp_chunk,
}


class TermCurvature(NamedTuple):
    """Full-space curvature of one term. Eigenvalue arrays are (k,); SLQ fields are ``None``
    unless a density was asked for (then ``nodes``/``weights`` are (density_probes, num_iters))."""

    positive_curvature: Array  # Tr/‖·‖_F (Eq. 2), ratio of Hutchinson means
    stderr: Array  # its delta-method standard error
    trace: Array
    trace_stderr: Array
    frobenius_norm: Array
    frobenius_stderr: Array
    spectral_norm: Array  # max |λ| (Ritz values)
    top_eigenvalues: Array  # largest algebraic, descending
    residual_norms: Array  # ‖X y − θ y‖ of the top Ritz pairs
    bottom_eigenvalues: Array  # smallest algebraic, ascending
    bottom_residual_norms: Array
    nodes: Array | None = None  # SLQ Gauss nodes, one row per probe
    weights: Array | None = None  # SLQ Gauss weights (rows sum to 1)
    grid: Array | None = None
    density: Array | None = None  # Gaussian-smoothed density on ``grid``, integrates to 1


# ----------------------------------------------------------------------------------- operators


@functools.cache
def operator(term: str, apply_fn: ApplyFn) -> Callable[..., Array]:
    """The stable matvec ``v ↦ X v`` of ``term`` for ``apply_fn``: one function object per key.

    Signature ``matvec(v, params, xs, ys, ws, temperature)`` with the stacked chunks of
    :func:`stack_chunks`; it sums the jitted per-chunk products of :mod:`gzone.curvature` over the
    C chunks (a Python loop: unrolled into the caller's trace, no ``scan`` — convolutions inside
    XLA loops are slow on CPU). Being the same object for equal (term, apply_fn), it is a cache
    hit for every jit that takes it as a static argument. (Bound methods such as ``model.apply``
    are equal only for the *same* model object: an equal but new model compiles anew.)
    """
    if term not in _CHUNK_PRODUCTS:
        raise ValueError(f"unknown term {term!r}; choose one of {', '.join(TERMS)}")
    chunk_product = _CHUNK_PRODUCTS[term]

    def matvec(v: Array, params: Any, xs: Array, ys: Array, ws: Array, temperature: Array) -> Array:
        v = v.astype(ws.dtype)
        return sum(
            chunk_product(apply_fn, params, v, xs[c], ys[c], ws[c], temperature)
            for c in range(xs.shape[0])
        )

    matvec.__name__ = matvec.__qualname__ = f"{term}_matvec"
    return matvec


def stack_chunks(
    apply_fn: ApplyFn, params: Any, x: Array, y: Array, chunk_size: int | None = None
) -> Chunks:
    """(xs, ys, ws): the samples as C equal chunks of B, weights 1/N (0 on the padding).

    Same chunking as :mod:`gzone.curvature` (``chunk_size=None``: as many samples per chunk as fit
    its memory budget for one tangent).
    """
    chunks = curvature.sample_chunks(apply_fn, params, x, y, chunk_size)
    return tuple(jnp.stack(parts) for parts in zip(*chunks))


# ----------------------------------------------------------------------------------- Hutchinson


@functools.partial(jax.jit, static_argnums=0)
def _apply(matvec: Callable, v: Array, *params: Any) -> Array:
    """X v: the one compiled product per (term, shapes), shared by Hutchinson and residuals."""
    return matvec(v, *params)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _rademacher(key: Array, i: Array, dim: int, dtype: Any) -> Array:
    return jax.random.rademacher(jax.random.fold_in(key, i), (dim,), dtype)


@jax.jit
def _scaled_forms(z: Array, az: Array) -> tuple[Array, Array, Array]:
    """(s, zᵀu, ‖u‖²) with u = X z / s and s = max|X z|: t = s·zᵀu and f = s²·‖u‖² never underflow."""
    scale = jnp.max(jnp.abs(az))
    unit = az / jnp.where(scale > 0, scale, 1)
    return scale, z @ unit, unit @ unit


def hutchinson_samples(
    matvec: Callable, dim: int, *params: Any, key: Array, num_probes: int, dtype: Any
) -> tuple[Array, Array, Array]:
    """Per Rademacher probe z_i = rademacher(fold_in(key, i)) (E zzᵀ = I): the scales
    s_i = max|Xz_i| and the scaled samples t_i/s_i = z_iᵀXz_i/s_i and f_i/s_i² = ‖Xz_i‖²/s_i²,
    each (num_probes,). One product X z_i per probe."""
    out = []
    for i in range(num_probes):
        z = _rademacher(key, i, dim, jnp.dtype(dtype))
        out.append(_scaled_forms(z, _apply(matvec, z, *params)))
    return tuple(jnp.stack(parts) for parts in zip(*out))


@jax.jit
def ratio_estimate(
    scales: Array, t: Array, f: Array
) -> tuple[Array, Array, Array, Array, Array, Array]:
    """Positive curvature Tr/‖·‖_F and its standard error from the *same* Hutchinson probes.

    With t_i = z_iᵀ X z_i (E t = Tr X) and f_i = ‖X z_i‖² (E f = ‖X‖_F²) from m Rademacher
    probes (inputs are t_i/s_i and f_i/s_i² with scales s_i, see :func:`hutchinson_samples`):

        r̂ = t̄ / √f̄,
        Var r̂ ≈ (1/m) ∇gᵀ Σ ∇g = (1/m) [ S_tt / f̄ − t̄ S_tf / f̄² + t̄² S_ff / (4 f̄³) ]

    (delta method for g(a, b) = a / √b, Σ the sample covariance of (t_i, f_i) with ddof = 1).
    Using the same probes for numerator and denominator keeps their correlation in the error
    (and halves the products). r̂ is a ratio estimator, biased by O(1/m), small against the
    O(1/√m) standard error. Everything is computed relative to s = max_i s_i, so the result is
    scale-free (a G-term of 1e-28 gives the same ratio as one of 1). Returns
    ``(r̂, se(r̂), Tr estimate, its se, ‖X‖_F estimate, its se)``.
    """
    m = t.shape[0]
    if m < 2:
        raise ValueError("a standard error needs num_probes >= 2")
    s = jnp.max(scales)
    rel = scales / jnp.where(s > 0, s, 1)
    t, f = t * rel, f * rel**2  # t_i / s and f_i / s²
    t_mean, f_mean = t.mean(), f.mean()
    cov = jnp.cov(jnp.stack([t, f]), ddof=1)
    f_safe = jnp.where(f_mean > 0, f_mean, jnp.nan)  # X = 0: ratio undefined (0/0)
    ratio = t_mean / jnp.sqrt(f_safe)
    variance = (
        cov[0, 0] / f_safe
        - t_mean * cov[0, 1] / f_safe**2
        + t_mean**2 * cov[1, 1] / (4 * f_safe**3)
    )
    stderr = jnp.sqrt(jnp.maximum(variance, 0) / m)
    frobenius = jnp.sqrt(f_mean)
    frobenius_stderr = jnp.sqrt(cov[1, 1] / m) / (2 * jnp.sqrt(f_safe))
    trace_stderr = jnp.sqrt(cov[0, 0] / m)
    return ratio, stderr, s * t_mean, s * trace_stderr, s * frobenius, s * frobenius_stderr


# ----------------------------------------------------------------------------------- Lanczos


@functools.partial(jax.jit, static_argnums=3)
def _ritz_extremes(alphas: Array, betas: Array, basis: Array, k: int):
    """Top-k (descending) and bottom-k (ascending) Ritz pairs, plus the Gauss quadrature
    (nodes θ, weights S[0]²) of the tridiagonal T = S diag(θ) Sᵀ."""
    t = lz.tridiagonal(alphas, betas)
    theta, s = jnp.linalg.eigh((t + t.T) / 2)  # ascending
    m = alphas.shape[0]
    idx = jnp.concatenate([jnp.arange(m - 1, m - 1 - k, -1), jnp.arange(k)])
    vectors = basis[:m].T @ s[:, idx]  # (dim, 2k)
    vectors = vectors / jnp.linalg.norm(vectors, axis=0, keepdims=True)
    return theta[idx], vectors, theta, s[0] ** 2


@jax.jit
def _quadrature(alphas: Array, betas: Array) -> tuple[Array, Array]:
    t = lz.tridiagonal(alphas, betas)
    theta, s = jnp.linalg.eigh((t + t.T) / 2)
    return theta, s[0] ** 2


@jax.jit
def _residual_norm(av: Array, vector: Array, value: Array) -> Array:
    """‖X y − θ y‖ in the dtype of y."""
    return jnp.linalg.norm(av.astype(vector.dtype) - value * vector)


_density = jax.jit(lz.density_from_quadrature, static_argnames="normalize")


def _lanczos_start(key: Array, i: int, dim: int, dtype: Any) -> Array:
    """Normalised Rademacher start vector of SLQ probe i."""
    return jax.random.rademacher(jax.random.fold_in(key, i), (dim,), dtype) / math.sqrt(dim)


def _default_grid(nodes: Array, sigma_rel: float, num_points: int) -> tuple[Array, float]:
    """Grid on [min θ − 3σ, max θ + 3σ] with σ = sigma_rel · (max θ − min θ), as
    :func:`gzone.lanczos.spectral_density`."""
    lo, hi = float(nodes.min()), float(nodes.max())
    sigma = sigma_rel * (hi - lo if hi > lo else max(abs(lo), abs(hi), 1.0))
    return jnp.linspace(lo - 3 * sigma, hi + 3 * sigma, num_points, dtype=nodes.dtype), sigma


def _term_curvature(
    matvec: Callable,
    params: tuple,
    dim: int,
    dtype: Any,
    key: Array,
    *,
    num_probes: int,
    num_iters: int,
    top_k: int,
    density: bool,
    density_probes: int,
    sigma_rel: float,
    num_points: int,
    reorth_dtype: Any,
    driver: str,
) -> TermCurvature:
    key_hutch, key_start, key_restart = jax.random.split(key, 3)
    stats = ratio_estimate(
        *hutchinson_samples(matvec, dim, *params, key=key_hutch, num_probes=num_probes, dtype=dtype)
    )
    nodes, weights = [], []
    for i in range(density_probes if density else 1):
        run = lz.lanczos_tridiag(
            matvec,
            _lanczos_start(key_start, i, dim, dtype),
            num_iters,
            *params,
            key=jax.random.fold_in(key_restart, i),
            reorth_dtype=reorth_dtype,
            driver=driver,
        )
        if i == 0:  # probe 0's Krylov space also gives the extreme eigenpairs
            values, vectors, theta, w = _ritz_extremes(*run, top_k)
            residuals = jnp.stack(
                [
                    _residual_norm(_apply(matvec, vectors[:, j], *params), vectors[:, j], values[j])
                    for j in range(2 * top_k)
                ]
            )
        else:
            theta, w = _quadrature(run.alphas, run.betas)
        nodes.append(theta)
        weights.append(w)
        del run  # the (num_iters + 1, P) basis is not kept
    spectral_norm = jnp.maximum(jnp.abs(values[0]), jnp.abs(values[top_k]))
    slq: dict[str, Any] = {}
    if density:
        nodes, weights = jnp.stack(nodes), jnp.stack(weights)
        grid, sigma = _default_grid(nodes, sigma_rel, num_points)
        slq = {
            "nodes": nodes,
            "weights": weights,
            "grid": grid,
            "density": _density(nodes, weights, grid, sigma),
        }
    return TermCurvature(
        *stats,
        spectral_norm=spectral_norm,
        top_eigenvalues=values[:top_k],
        residual_norms=residuals[:top_k],
        bottom_eigenvalues=values[top_k:],
        bottom_residual_norms=residuals[top_k:],
        **slq,
    )


def full_space_curvature(
    apply_fn: ApplyFn,
    params: Any,
    x: Array,
    y: Array,
    temperature: float | Array = 1.0,
    *,
    key: Array,
    terms: Sequence[str] = TERMS,
    num_probes: int = 100,
    num_iters: int = 100,
    top_k: int = 5,
    density: bool = True,
    density_probes: int = 1,
    sigma_rel: float = 0.01,
    num_points: int = 512,
    common_probes: bool = False,
    chunk_size: int | None = None,
    reorth_dtype: Any = None,
    driver: str = "auto",
) -> dict[str, TermCurvature]:
    """Positive curvature (with standard error), extreme eigenvalues and spectral density of the
    full-batch H, G-term and H-term (Eq. 4) at ``params``, in the full P-dimensional space.

    Per term: ``num_probes`` Hutchinson probes (Rademacher) give Tr, ‖·‖_F and their ratio
    (:func:`ratio_estimate`); one Lanczos run of ``num_iters`` steps (clipped to P) from a
    normalised Rademacher vector gives the top-``top_k`` and bottom-``top_k`` Ritz values with
    true residual norms and the spectral norm max|θ| (both ends converge in the same Krylov space,
    so one run replaces ``eigsh(which="LA")`` plus ``eigsh(which="LM")``); with ``density``, that run
    and ``density_probes − 1`` more form the SLQ quadrature, smoothed with a Gaussian of width
    ``sigma_rel`` × (node range) on ``num_points`` points.

    Randomness: term ``t`` uses ``fold_in(key, TERMS.index(t))`` (the same numbers whichever
    terms are asked for), split into Hutchinson probes, Lanczos start vectors and breakdown
    restarts. With ``common_probes`` every term uses ``key`` itself (common random numbers): the
    per-probe samples then add up exactly like H = G-term + H-term, so differences between the
    terms carry much less noise than the terms themselves (as in the subspace sweep, which
    projects all three onto the same R). Products run in the parameters' dtype; the Lanczos recurrence in ``reorth_dtype``
    (default: the same). ``driver``: see :mod:`gzone.lanczos`.
    """
    unknown = [t for t in terms if t not in TERMS]
    if unknown:
        raise ValueError(f"unknown terms {unknown}; choose from {', '.join(TERMS)}")
    if num_probes < 2:
        raise ValueError(f"num_probes must be >= 2 for a standard error, got {num_probes}")
    if num_iters < 1 or top_k < 1 or density_probes < 1:
        raise ValueError("num_iters, top_k and density_probes must be positive")
    flat = ravel_pytree(params)[0]
    dim, dtype = flat.size, flat.dtype
    num_iters = min(num_iters, dim)
    top_k = min(top_k, num_iters)
    xs, ys, ws = stack_chunks(apply_fn, params, x, y, chunk_size)
    operands = (params, xs, ys, ws, jnp.asarray(temperature, dtype))
    return {
        term: _term_curvature(
            operator(term, apply_fn),
            operands,
            dim,
            dtype,
            key if common_probes else jax.random.fold_in(key, TERMS.index(term)),
            num_probes=num_probes,
            num_iters=num_iters,
            top_k=top_k,
            density=density,
            density_probes=density_probes,
            sigma_rel=sigma_rel,
            num_points=num_points,
            reorth_dtype=reorth_dtype,
            driver=driver,
        )
        for term in terms
    }
