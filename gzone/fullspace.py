"""Curvature in the full parameter space (d = P): nothing is materialised, everything is matrix-free.

For each term X ∈ {H, G-term, H-term} of Eq. (4) of the ICML paper:

* **positive curvature** Tr X / ‖X‖_F (Eq. 2) by Hutchinson's estimator (Hutchinson 1989) with a
  delta-method standard error (:func:`gzone.hutchinson.ratio_estimate`);
* **extreme eigenvalues** — the top-k (largest algebraic), the bottom-k and the spectral norm
  ‖X‖₂ = max |λ| — as Ritz values of one Lanczos run (:func:`gzone.lanczos.lanczos_tridiag`, full
  reorthogonalisation), each with its true residual norm ‖X y − θ y‖;
* optionally the **spectral density** by stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017;
  Ghorbani, Krishnan & Xiao 2019), whose first probe is that same Lanczos run.

Compile once, sweep many α. The operators are :func:`gzone.curvature.operator`: the one cached
``matvec(v, params, batches, temperature)`` per (term, apply_fn) bound to its operands, the data
laid out once as :class:`gzone.curvature.Batches`. Lanczos, Hutchinson and the residuals
jit-compile their steps with the matvec as a static argument, so a sweep over α and T (new
parameter *values*, same shapes) reuses every compiled step. Everything here is a composition of
the building blocks of :mod:`gzone.lanczos` and :mod:`gzone.hutchinson`.

Cost per term: ``num_iters · max(1, density_probes) + num_probes + 2·top_k`` products X v.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gzone import curvature, hutchinson
from gzone import lanczos as lz

Array = jax.Array
ApplyFn = Callable[[Any, Array], Array]
TERMS = curvature.TERMS


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


# ----------------------------------------------------------------------------------- one term


def _term_curvature(
    op: lz.Operator,
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
    """Hutchinson ratio, extreme Ritz pairs and SLQ density of one term, composed from the
    building blocks of :mod:`gzone.lanczos` and :mod:`gzone.hutchinson`."""
    key_hutch, key_start, key_restart = jax.random.split(key, 3)
    stats = hutchinson.ratio_estimate(*hutchinson.hutchinson_samples(
        op, dim, key=key_hutch, num_probes=num_probes, dtype=dtype))
    nodes, weights = [], []
    for i in range(density_probes if density else 1):
        run = lz.lanczos_tridiag(
            op, lz.probe_vector(key_start, i, dim, dtype), num_iters,
            key=jax.random.fold_in(key_restart, i), reorth_dtype=reorth_dtype, driver=driver,
        )
        if i == 0:  # probe 0's Krylov space also gives the extreme eigenpairs
            top, top_vectors = lz.select_ritz(run, top_k, "LA")
            bottom, bottom_vectors = lz.select_ritz(run, top_k, "SA")
        theta, w = lz.gauss_quadrature(run.alphas, run.betas)
        nodes.append(theta)
        weights.append(w)
        del run  # the (num_iters + 1, P) basis is not kept
    residuals = [lz.residual_norms(op, values, vectors, dtype=dtype, batch_size=1)  # one X y at a time
                 for values, vectors in ((top, top_vectors), (bottom, bottom_vectors))]
    slq: dict[str, Any] = {}
    if density:
        nodes, weights = jnp.stack(nodes), jnp.stack(weights)
        grid, sigma = lz.density_grid(nodes, sigma_rel=sigma_rel, num_points=num_points)
        slq = {"nodes": nodes, "weights": weights, "grid": grid,
               "density": lz.density_from_quadrature(nodes, weights, grid, sigma)}
    return TermCurvature(
        *stats,
        spectral_norm=jnp.maximum(jnp.abs(top[0]), jnp.abs(bottom[0])),
        top_eigenvalues=top,
        residual_norms=residuals[0],
        bottom_eigenvalues=bottom,
        bottom_residual_norms=residuals[1],
        **slq,
    )


def full_space_curvature(
    apply_fn: ApplyFn,
    params: Any,
    x: Array | curvature.Batches,
    y: Array | None,
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
    dim, dtype = curvature.num_params(params), curvature.params_dtype(params)
    num_iters = min(num_iters, dim)
    top_k = min(top_k, num_iters)
    batches = curvature.as_batches(apply_fn, params, x, y, chunk_size)
    return {
        term: _term_curvature(
            curvature.operator(term, apply_fn, params, batches, None, temperature),
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
