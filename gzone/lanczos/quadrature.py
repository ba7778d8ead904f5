"""Quadrature and spectral densities of :mod:`gzone.lanczos`: the Gauss rule of a Lanczos run,
stochastic Lanczos quadrature over random probes (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan &
Xiao 2019) and its Gaussian-smoothed density on one width rule.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from gzone.lanczos.operator import (
    Array,
    Matvec,
    Operator,
    check_dtype,
    check_positive,
    probe_vector,
    resolve_driver,
    unpack,
    working_dtype,
)
from gzone.lanczos.recurrence import _ritz, _run_lanczos


def gauss_quadrature(alphas: Array, betas: Array) -> tuple[Array, Array]:
    """Gauss quadrature rule of a Lanczos run: nodes θ (eigenvalues of T = S diag(θ) Sᵀ, ascending)
    and weights ``S[0]**2`` (they sum to 1), so that q₁ᵀ f(A) q₁ ≈ Σ_i w_i f(θ_i)."""
    theta, s = _ritz(alphas, betas)
    return theta, s[0] ** 2



def slq_quadrature(
    matvec: Matvec | Operator,
    dim: int,
    *params: Any,
    key: Array,
    num_probes: int,
    num_iters: int,
    probe: str = "rademacher",
    dtype: Any = None,
    reorth_dtype: Any = None,
    driver: str = "auto",
) -> tuple[Array, Array]:
    """Gauss quadrature rules of stochastic Lanczos quadrature, one per probe.

    For each normalised probe z (Rademacher or Gaussian), ``num_iters`` Lanczos steps give
    T = S diag(θ) Sᵀ; the nodes are θ and the weights ``S[0]**2`` (they sum to 1), so that
    ``zᵀ f(A) z ≈ Σ_i w_i f(θ_i)`` (:func:`gauss_quadrature`). Returns ``(nodes, weights)``, each
    (num_probes, num_iters). Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019.
    """
    matvec, params = unpack(matvec, params)
    dim, num_probes = check_positive("dim", dim), check_positive("num_probes", num_probes)
    num_iters = check_positive("num_iters", num_iters)
    if num_iters > dim:
        raise ValueError(f"num_iters={num_iters} exceeds the dimension {dim}")
    mdtype = working_dtype(matvec, dim, params, dtype)
    rdtype = mdtype if reorth_dtype is None else check_dtype(reorth_dtype, "reorth_dtype")
    resolve_driver(driver)
    kind = probe
    key_probe, key_restart = jax.random.split(key)
    rules = []
    for i in range(num_probes):
        run = _run_lanczos(
            matvec, params, probe_vector(key_probe, i, dim, mdtype, kind),
            jax.random.fold_in(key_restart, i), num_iters, rdtype, driver,
        )[0]
        rules.append(gauss_quadrature(run.alphas, run.betas))
        del run  # the (num_iters + 1, dim) basis is not kept
    nodes, weights = zip(*rules)
    return jnp.stack(nodes), jnp.stack(weights)


def density_grid(
    nodes: Array, sigma: float | None = None, *, sigma_rel: float = 0.01, num_points: int = 1024
) -> tuple[Array, float]:
    """The one width rule of the smoothed densities: σ = ``sigma`` if given, else ``sigma_rel`` ×
    (max θ − min θ) (× the largest |θ|, or 1, when all nodes coincide), and a grid of
    ``num_points`` points on [min θ − 3σ, max θ + 3σ]. Returns ``(grid, sigma)``."""
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if not sigma_rel > 0:
        raise ValueError(f"sigma_rel must be positive, got {sigma_rel}")
    num_points = check_positive("num_points", num_points)
    lo, hi = float(jnp.min(nodes)), float(jnp.max(nodes))
    if sigma is None:
        sigma = sigma_rel * (hi - lo if hi > lo else max(abs(lo), abs(hi), 1.0))
    grid = jnp.linspace(lo - 3 * sigma, hi + 3 * sigma, num_points, dtype=jnp.result_type(nodes))
    return grid, sigma


@partial(jax.jit, static_argnames="normalize")
def density_from_quadrature(
    nodes: Array, weights: Array, grid: Array, sigma: float, *, normalize: bool = True
) -> Array:
    """Gaussian-smoothed spectral density on ``grid``, averaged over probes.

    ``density(x) = mean_p Σ_i w_pi N(x; θ_pi, σ²)``; with ``normalize`` it is rescaled to integrate
    to 1 on the grid (trapezoid rule).
    """
    nodes, weights, grid = jnp.atleast_2d(nodes), jnp.atleast_2d(weights), jnp.asarray(grid)
    z = (grid[None, None, :] - nodes[..., None]) / sigma
    kernel = jnp.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
    density = jnp.einsum("pm,pmg->g", weights, kernel,
                         precision=jax.lax.Precision.HIGHEST) / nodes.shape[0]
    if normalize:
        total = jnp.trapezoid(density, grid)
        density = density / jnp.where(total > 0, total, 1)
    return density


def spectral_density(
    matvec: Matvec | Operator,
    dim: int,
    *params: Any,
    key: Array,
    num_probes: int,
    num_iters: int,
    grid: Array | None = None,
    sigma: float | None = None,
    sigma_rel: float = 0.01,
    num_points: int = 1024,
    probe: str = "rademacher",
    dtype: Any = None,
    reorth_dtype: Any = None,
    driver: str = "auto",
) -> tuple[Array, Array]:
    """Spectral density of A by stochastic Lanczos quadrature; returns ``(grid, density)``.

    ``sigma`` defaults to ``sigma_rel`` (1%) of the node range and the default grid has
    ``num_points`` points (:func:`density_grid`). The density integrates to 1 on the grid.
    """
    nodes, weights = slq_quadrature(
        matvec, dim, *params, key=key, num_probes=num_probes, num_iters=num_iters, probe=probe,
        dtype=dtype, reorth_dtype=reorth_dtype, driver=driver,
    )
    default_grid, sigma = density_grid(nodes, sigma, sigma_rel=sigma_rel, num_points=num_points)
    grid = default_grid if grid is None else jnp.asarray(grid)
    return grid, density_from_quadrature(nodes, weights, grid, sigma)
