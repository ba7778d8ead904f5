"""Matrix-free spectral tools for symmetric operators given as matvecs ``v -> A v`` (1-D, length dim).

* :func:`lanczos_tridiag` — Lanczos tridiagonalisation with full reorthogonalisation (vectorised
  two-pass classical Gram–Schmidt against the stored basis) and a breakdown guard that restarts
  with a fresh random vector instead of dividing by a vanishing beta (Lanczos 1950; Paige 1972;
  Golub & Van Loan, *Matrix Computations*, Sec. 10.1).
* :func:`eigsh` — extreme eigenpairs (``"LA"``, ``"SA"``, ``"LM"``) with true residual norms.
* :func:`slq_quadrature`, :func:`density_from_quadrature`, :func:`spectral_density` — stochastic
  Lanczos quadrature (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019).
* :func:`trace_estimate`, :func:`frobenius_estimate` — Hutchinson and Hutch++ (Meyer, Musco, Musco
  & Woodruff 2021) estimators with standard errors.

The operator may be indefinite and rank-deficient. The matvec always runs in its own dtype (the
``dtype`` of the start vector / probes); the Lanczos recurrence (basis, alphas, betas, Gram–Schmidt)
may run in a wider ``reorth_dtype`` such as float64, which requires
``jax.config.update("jax_enable_x64", True)`` (never switched on by this module).

Drivers. ``driver="fori"`` runs the whole iteration in one jitted ``lax.fori_loop`` (no host
sync). ``driver="host"`` runs a Python loop over one jitted Lanczos step with donated state.
``driver="auto"`` picks ``"host"`` on CPU and ``"fori"`` elsewhere: on CPU, XLA compiles
convolutions inside loop bodies much less efficiently (a LeNet-5 Hessian-vector product ran ~7x
slower inside ``fori_loop`` than jitted alone), whereas on GPU/TPU the fused loop avoids per-step
dispatch. Both drivers execute the same step function and give the same numbers.

Matvecs have the form ``matvec(v, *params)`` (matfree style; a plain ``v -> A v`` needs no
params). Compiled code is cached by jax per matvec *function* (a static argument) and per array
shape, so pass one fixed function and feed what changes between calls (network parameters, data
batches) through ``*params``: nothing is recompiled. A fresh closure per call recompiles each time
(and jax's cache keeps it, with whatever it captured, alive).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
Matvec = Callable[..., Array]  # matvec(v, *params) -> A v

DRIVERS = ("auto", "host", "fori")
WHICH = ("LA", "SA", "LM")
PROBES = ("rademacher", "gaussian")
TRACE_METHODS = ("hutchinson", "hutch++")


class LanczosResult(NamedTuple):
    """Output of :func:`lanczos_tridiag` for ``m = num_iters`` steps, all in the recurrence dtype.

    ``alphas`` (m,) is the diagonal of T; ``betas`` (m,) holds the off-diagonal ``betas[:-1]`` and
    the residual norm ``betas[-1]``; ``basis`` (m + 1, dim) holds q_1 … q_{m+1} as rows, so
    ``A Q_m = Q_m T + betas[-1] q_{m+1} e_mᵀ`` with ``Q_m = basis[:m].T``. A beta of exactly 0 marks
    a breakdown after which the iteration restarted from a fresh random orthogonal vector.
    """

    alphas: Array
    betas: Array
    basis: Array


class EigshResult(NamedTuple):
    """Ritz pairs from :func:`eigsh`: eigenvalues (k,), eigenvectors (dim, k), residual norms (k,)."""

    eigenvalues: Array
    eigenvectors: Array
    residual_norms: Array


# ----------------------------------------------------------------------------------- helpers


def _check_dtype(dtype: Any, what: str) -> jnp.dtype:
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{what} must be a floating dtype, got {dtype}")
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:  # float64 while 64-bit mode is off
        raise ValueError(
            f"{what}={dtype} needs 64-bit mode, which is off: call "
            "jax.config.update('jax_enable_x64', True) at start-up (or set JAX_ENABLE_X64=1)"
        )
    return dtype


def _resolve_driver(driver: str) -> str:
    if driver not in DRIVERS:
        raise ValueError(f"unknown driver {driver!r}; choose one of {', '.join(DRIVERS)}")
    if driver == "auto":
        return "host" if jax.default_backend() == "cpu" else "fori"
    return driver


def _check_positive(name: str, value: Any) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _apply_block(
    matvec: Matvec, vectors: Array, params: tuple = (), batch_size: int | None = None
) -> Array:
    """Rows of ``A Vᵀ`` for a (n, dim) block V via ``jax.vmap(matvec)``, in chunks of batch_size."""
    n = vectors.shape[0]
    if batch_size is None or batch_size >= n:
        return _apply_chunk(matvec, vectors, *params)
    batch_size = _check_positive("batch_size", batch_size)
    padded = jnp.pad(vectors, ((0, -n % batch_size), (0, 0)))  # one compiled shape for all chunks
    chunks = [
        _apply_chunk(matvec, padded[i : i + batch_size], *params)
        for i in range(0, padded.shape[0], batch_size)
    ]
    return jnp.concatenate(chunks)[:n]


@partial(jax.jit, static_argnums=0)
def _apply_chunk(matvec: Matvec, vectors: Array, *params: Any) -> Array:
    return jax.vmap(lambda v: matvec(v, *params))(vectors)


def tridiagonal(alphas: Array, betas: Array) -> Array:
    """Dense symmetric (m, m) tridiagonal matrix T from the Lanczos coefficients."""
    off = betas[: alphas.shape[0] - 1]
    return jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)


@jax.jit
def _ritz(alphas: Array, betas: Array) -> tuple[Array, Array]:
    t = tridiagonal(alphas, betas)
    return jnp.linalg.eigh((t + t.T) / 2)


# ----------------------------------------------------------------------------------- Lanczos


class _State(NamedTuple):
    basis: Array  # (m + 1, dim); rows beyond the current step are zero
    alphas: Array  # (m,)
    betas: Array  # (m,)
    norm_estimate: Array  # running lower bound max_j ||A q_j|| on ||A||_2
    seed: Array  # uint32 seed of the breakdown-restart vectors


def _hash32(x: Array) -> Array:
    """lowbias32 integer hash (C. Wellons) on uint32 arrays: a bijection with good avalanche."""
    x = (x ^ (x >> 16)) * jnp.uint32(0x7FEB352D)
    x = (x ^ (x >> 15)) * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _restart_vector(seed: Array, j: Array, dim: int, dtype: Any) -> Array:
    """Pseudo-random vector with entries uniform in (-1, 1), a hash of (seed, j, index).

    Restart directions only need to be generic; a counter-based hash compiles to a few integer ops,
    where a threefry draw inside the step roughly doubles its compile time on CPU.
    """
    h = _hash32(seed ^ _hash32(j.astype(jnp.uint32) + jnp.uint32(1)))
    bits = _hash32(jnp.arange(dim, dtype=jnp.uint32) * jnp.uint32(0x9E3779B9) + h)
    return (bits >> 8).astype(dtype) * (2.0**-23) - (1 - 2.0**-24)


def _normalise(v: Array) -> Array:
    norm = jnp.linalg.norm(v)
    ok = norm > jnp.finfo(v.dtype).tiny
    return jnp.where(ok, v / jnp.where(ok, norm, 1), jnp.zeros_like(v))


@partial(jax.jit, static_argnums=(2, 3))
def _lanczos_init(v0: Array, key: Array, num_iters: int, rdtype: Any) -> _State:
    """State with q_1 = v0 / ||v0|| (the all-ones direction if v0 = 0)."""
    dim = v0.shape[0]
    v = _normalise(v0.astype(rdtype))
    v = jnp.where(jnp.any(v != 0), v, jnp.full((dim,), 1 / math.sqrt(dim), rdtype))
    basis = jnp.zeros((num_iters + 1, dim), rdtype).at[0].set(v)
    zeros = jnp.zeros((num_iters,), rdtype)
    seed = _hash32(jax.random.key_data(key).ravel().astype(jnp.uint32)).sum(dtype=jnp.uint32)
    return _State(basis, zeros, zeros, jnp.zeros((), rdtype), seed)


def _lanczos_step(matvec: Matvec, mdtype: Any, j: Array, state: _State, *params: Any) -> _State:
    """Lanczos step j (0-based): q_{j+2}, alpha_{j+1}, beta_{j+1} with full reorthogonalisation."""
    basis = state.basis
    rdtype, (size, dim) = basis.dtype, basis.shape
    mask = (jnp.arange(size) <= j).astype(rdtype)  # q_1 … q_{j+1}

    def orthogonalise(w: Array) -> tuple[Array, Array]:
        # two-pass classical Gram–Schmidt against the stored basis: two gemvs per pass
        h1 = (basis @ w) * mask
        w = w - h1 @ basis
        h2 = (basis @ w) * mask
        return w - h2 @ basis, h1 + h2

    w = matvec(basis[j].astype(mdtype), *params).astype(rdtype)
    norm_estimate = jnp.maximum(state.norm_estimate, jnp.linalg.norm(w))
    w, coeffs = orthogonalise(w)
    alpha, beta = coeffs[j], jnp.linalg.norm(w)
    # below the matvec's round-off level, beta is noise: an invariant subspace has been found
    tol = float(jnp.finfo(mdtype).eps) * math.sqrt(dim) * norm_estimate
    breakdown = beta <= jnp.maximum(tol, jnp.finfo(rdtype).tiny)

    def restart(_: None) -> Array:  # continue from a random vector orthogonal to the basis
        return _normalise(orthogonalise(_restart_vector(state.seed, j, dim, rdtype))[0])

    q_next = lax.cond(breakdown, restart, lambda _: w / jnp.where(breakdown, 1, beta), None)
    return _State(
        basis.at[j + 1].set(q_next),
        state.alphas.at[j].set(alpha),
        state.betas.at[j].set(jnp.where(breakdown, 0, beta)),
        norm_estimate,
        state.seed,
    )


# host driver: one compiled step, called from Python; the state (incl. the basis) is donated
_lanczos_step_jit = jax.jit(_lanczos_step, static_argnums=(0, 1), donate_argnums=3)


@partial(jax.jit, static_argnums=(0, 1, 2), donate_argnums=3)
def _lanczos_fori(
    matvec: Matvec, mdtype: Any, num_iters: int, state: _State, *params: Any
) -> _State:
    step = partial(_lanczos_step, matvec, mdtype)
    return lax.fori_loop(0, num_iters, lambda j, s: step(j, s, *params), state)


def _run_lanczos(
    matvec: Matvec, params: tuple, v0: Array, key: Array, num_iters: int, rdtype: Any, driver: str
) -> LanczosResult:
    state = _lanczos_init(v0, key, num_iters, rdtype)
    if _resolve_driver(driver) == "fori":
        state = _lanczos_fori(matvec, v0.dtype, num_iters, state, *params)
    else:
        for j in range(num_iters):
            state = _lanczos_step_jit(matvec, v0.dtype, j, state, *params)
    return LanczosResult(state.alphas, state.betas, state.basis)


def lanczos_tridiag(
    matvec: Matvec,
    v0: Array,
    num_iters: int,
    *params: Any,
    key: Array | None = None,
    reorth_dtype: Any = None,
    driver: str = "auto",
) -> LanczosResult:
    """``num_iters`` Lanczos steps on the symmetric operator ``v -> matvec(v, *params)`` from ``v0``.

    Full reorthogonalisation (two-pass classical Gram–Schmidt against the whole stored basis) keeps
    the basis orthonormal to working precision. When beta falls below
    ``eps(matvec dtype) * sqrt(dim) * max_j ||A q_j||`` (an invariant subspace was found, e.g. a
    rank-deficient operator or ``v0`` in an eigenspace), that beta is set to 0 and the iteration
    continues from a fresh pseudo-random vector (seeded by ``key``, default ``PRNGKey(0)``)
    orthogonalised against the basis; no NaNs are produced. A zero ``v0`` is replaced by the
    normalised all-ones vector. The matvec runs in ``v0.dtype``; the recurrence in
    ``reorth_dtype`` (default ``v0.dtype``). Requires ``1 <= num_iters <= dim``.
    """
    v0 = jnp.asarray(v0)
    if v0.ndim != 1:
        raise ValueError(f"v0 must be a 1-D vector, got shape {v0.shape}")
    dim = v0.shape[0]
    num_iters = _check_positive("num_iters", num_iters)
    if num_iters > dim:
        raise ValueError(f"num_iters={num_iters} exceeds the dimension {dim}")
    mdtype = _check_dtype(v0.dtype, "v0 dtype")
    rdtype = mdtype if reorth_dtype is None else _check_dtype(reorth_dtype, "reorth_dtype")
    key = jax.random.PRNGKey(0) if key is None else key
    return _run_lanczos(matvec, params, v0, key, num_iters, rdtype, driver)


# ----------------------------------------------------------------------------------- eigsh


@partial(jax.jit, static_argnums=4)
def _select_ritz(
    alphas: Array, betas: Array, basis: Array, which: Array, k: int
) -> tuple[Array, Array]:
    """Top-k Ritz pairs; ``which`` is the index of the ordering in ``WHICH`` (traced)."""
    theta, s = _ritz(alphas, betas)
    order = jnp.stack([-theta, theta, -jnp.abs(theta)])[which]  # LA, SA, LM
    idx = jnp.argsort(order, stable=True)[:k]
    vectors = basis[: alphas.shape[0]].T @ s[:, idx]  # (dim, k)
    return theta[idx], vectors / jnp.linalg.norm(vectors, axis=0, keepdims=True)


def eigsh(
    matvec: Matvec,
    dim: int,
    k: int,
    *params: Any,
    key: Array,
    num_iters: int | None = None,
    which: str = "LA",
    dtype: Any = jnp.float32,
    reorth_dtype: Any = None,
    driver: str = "auto",
    v0: Array | None = None,
    batch_size: int | None = None,
) -> EigshResult:
    """``k`` extreme eigenpairs of the symmetric operator ``v -> matvec(v, *params)`` by Lanczos.

    ``which``: ``"LA"`` largest algebraic (returned in descending order), ``"SA"`` smallest
    algebraic (ascending), ``"LM"`` largest magnitude (descending |λ|). The start vector is a
    normalised Gaussian drawn from ``key`` (or ``v0`` if given). ``num_iters`` defaults to
    ``min(dim, max(2k + 20, 50))`` and must satisfy ``k <= num_iters <= dim``. Residual norms
    ``||A v - λ v||`` are computed with ``k`` real matvecs (``jax.vmap``, chunks of
    ``batch_size``). The matvec runs in ``dtype``; the outputs are in the recurrence dtype
    (``reorth_dtype``, default ``dtype``).
    """
    dim, k = _check_positive("dim", dim), _check_positive("k", k)
    if k > dim:
        raise ValueError(f"k={k} exceeds the dimension {dim}")
    if which not in WHICH:
        raise ValueError(f"unknown which={which!r}; choose one of {', '.join(WHICH)}")
    num_iters = min(dim, max(2 * k + 20, 50)) if num_iters is None else num_iters
    num_iters = _check_positive("num_iters", num_iters)
    if not k <= num_iters <= dim:
        raise ValueError(f"need k <= num_iters <= dim, got k={k}, num_iters={num_iters}, dim={dim}")
    mdtype = _check_dtype(dtype, "dtype")
    rdtype = mdtype if reorth_dtype is None else _check_dtype(reorth_dtype, "reorth_dtype")
    _resolve_driver(driver)
    key_start, key_restart = jax.random.split(key)
    if v0 is None:
        v0 = _probe(key_start, 0, dim, mdtype, "gaussian")
    elif jnp.shape(v0) != (dim,):
        raise ValueError(f"v0 must have shape ({dim},), got {jnp.shape(v0)}")

    v0 = jnp.asarray(v0, mdtype)
    result = _run_lanczos(matvec, params, v0, key_restart, num_iters, rdtype, driver)
    values, vectors = _select_ritz(*result, WHICH.index(which), k)
    av = _apply_block(matvec, vectors.T.astype(mdtype), params, batch_size).astype(rdtype)
    residuals = jnp.linalg.norm(av - values[:, None] * vectors.T, axis=1)
    return EigshResult(values, vectors, residuals)


# ----------------------------------------------------------------------------------- SLQ


@partial(jax.jit, static_argnums=(2, 3))
def _probe32(key: Array, i: int, dim: int, kind: str) -> Array:
    key = jax.random.fold_in(key, i)
    if kind == "rademacher":
        return jax.random.rademacher(key, (dim,), jnp.float32)
    return jax.random.normal(key, (dim,), jnp.float32)


def _probe(key: Array, i: int, dim: int, dtype: Any, kind: str) -> Array:
    """Probe vector number i, drawn from ``fold_in(key, i)`` in float32 and cast to ``dtype``.

    One compilation per (dim, kind), whatever the number of probes or the dtype.
    """
    return _probe32(key, i, dim, kind).astype(dtype)


def _probes(key: Array, num: int, dim: int, dtype: Any, kind: str = "rademacher") -> Array:
    """(num, dim) block of Rademacher or Gaussian probes."""
    if kind not in PROBES:
        raise ValueError(f"unknown probe {kind!r}; choose one of {', '.join(PROBES)}")
    return jnp.stack([_probe(key, i, dim, jnp.dtype(dtype), kind) for i in range(num)])


def slq_quadrature(
    matvec: Matvec,
    dim: int,
    *params: Any,
    key: Array,
    num_probes: int,
    num_iters: int,
    probe: str = "rademacher",
    dtype: Any = jnp.float32,
    reorth_dtype: Any = None,
    driver: str = "auto",
) -> tuple[Array, Array]:
    """Gauss quadrature rules of stochastic Lanczos quadrature, one per probe.

    For each normalised probe z (Rademacher or Gaussian), ``num_iters`` Lanczos steps give
    T = S diag(θ) Sᵀ; the nodes are θ and the weights ``S[0]**2`` (they sum to 1), so that
    ``zᵀ f(A) z ≈ Σ_i w_i f(θ_i)``. Returns ``(nodes, weights)``, each (num_probes, num_iters).
    Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019.
    """
    dim, num_probes = _check_positive("dim", dim), _check_positive("num_probes", num_probes)
    num_iters = _check_positive("num_iters", num_iters)
    if num_iters > dim:
        raise ValueError(f"num_iters={num_iters} exceeds the dimension {dim}")
    mdtype = _check_dtype(dtype, "dtype")
    rdtype = mdtype if reorth_dtype is None else _check_dtype(reorth_dtype, "reorth_dtype")
    _resolve_driver(driver)
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; choose one of {', '.join(PROBES)}")
    key_probe, key_restart = jax.random.split(key)
    results = [
        _run_lanczos(
            matvec,
            params,
            _probe(key_probe, i, dim, mdtype, probe),
            jax.random.fold_in(key_restart, i),
            num_iters,
            rdtype,
            driver,
        )
        for i in range(num_probes)
    ]
    alphas = jnp.stack([r.alphas for r in results])
    betas = jnp.stack([r.betas for r in results])
    nodes, vectors = jax.vmap(_ritz)(alphas, betas)
    return nodes, vectors[:, 0, :] ** 2


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
    density = jnp.einsum("pm,pmg->g", weights, kernel) / nodes.shape[0]
    if normalize:
        total = jnp.trapezoid(density, grid)
        density = density / jnp.where(total > 0, total, 1)
    return density


def spectral_density(
    matvec: Matvec,
    dim: int,
    *params: Any,
    key: Array,
    num_probes: int,
    num_iters: int,
    grid: Array | None = None,
    sigma: float | None = None,
    num_points: int = 1024,
    probe: str = "rademacher",
    dtype: Any = jnp.float32,
    reorth_dtype: Any = None,
    driver: str = "auto",
) -> tuple[Array, Array]:
    """Spectral density of A by stochastic Lanczos quadrature; returns ``(grid, density)``.

    ``sigma`` defaults to 1% of the node range (max θ − min θ); the default grid has
    ``num_points`` points on [min θ − 3σ, max θ + 3σ]. The density integrates to 1 on the grid.
    """
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    nodes, weights = slq_quadrature(
        matvec,
        dim,
        *params,
        key=key,
        num_probes=num_probes,
        num_iters=num_iters,
        probe=probe,
        dtype=dtype,
        reorth_dtype=reorth_dtype,
        driver=driver,
    )
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = 0.01 * (hi - lo if hi > lo else max(abs(lo), abs(hi), 1.0))
    if grid is None:
        grid = jnp.linspace(lo - 3 * sigma, hi + 3 * sigma, num_points, dtype=nodes.dtype)
    grid = jnp.asarray(grid)
    return grid, density_from_quadrature(nodes, weights, grid, sigma)


# ----------------------------------------------------------------------------------- trace


def _randomised_estimate(
    matvec: Matvec,
    dim: int,
    params: tuple,
    key: Array,
    num_probes: int,
    method: str,
    dtype: Any,
    batch_size: int | None,
    sample: Callable[[Array, Array], Array],
) -> tuple[Array, Array]:
    """Shared Hutchinson / Hutch++ driver; ``sample(Z, A Z)`` gives one statistic per probe row."""
    dim, num_probes = _check_positive("dim", dim), _check_positive("num_probes", num_probes)
    if method not in TRACE_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(TRACE_METHODS)}")
    dtype = _check_dtype(dtype, "dtype")

    def estimate(z: Array, offset: Array | float = 0.0) -> tuple[Array, Array]:
        samples = sample(z, _apply_block(matvec, z, params, batch_size).astype(dtype))
        return offset + samples.mean(), samples.std(ddof=1) / math.sqrt(samples.shape[0])

    if method == "hutchinson":
        if num_probes < 2:
            raise ValueError("a standard error needs num_probes >= 2")
        return estimate(_probes(key, num_probes, dim, dtype))
    if num_probes < 4:
        raise ValueError(f"hutch++ needs num_probes >= 4, got {num_probes}")
    num_sketch = num_probes // 3  # matvecs: num_sketch (A S) + num_sketch (A Q) + the rest
    key_sketch, key_hutch = jax.random.split(key)
    sketch = _apply_block(matvec, _probes(key_sketch, num_sketch, dim, dtype), params, batch_size)
    q = jnp.linalg.qr(sketch.astype(dtype).T)[0].T  # (num_sketch, dim), orthonormal rows
    exact = sample(q, _apply_block(matvec, q, params, batch_size).astype(dtype)).sum()
    g = _probes(key_hutch, num_probes - 2 * num_sketch, dim, dtype)
    return estimate(g - (g @ q.T) @ q, exact)  # Hutchinson on deflated probes (I - Q Qᵀ) g


def trace_estimate(
    matvec: Matvec,
    dim: int,
    *params: Any,
    key: Array,
    num_probes: int,
    method: str = "hutchinson",
    dtype: Any = jnp.float32,
    batch_size: int | None = None,
) -> tuple[Array, Array]:
    """Randomised estimate of tr(A) with Rademacher probes; returns ``(estimate, standard_error)``.

    ``"hutchinson"``: mean of zᵀAz. ``"hutch++"`` (Meyer, Musco, Musco & Woodruff 2021):
    ``num_probes // 3`` sketch vectors S, Q = qr(A S), exact tr(QᵀAQ), plus Hutchinson on
    (I − QQᵀ) A (I − QQᵀ) with the remaining probes (``num_probes`` matvecs in all); the standard
    error is that of the Hutchinson part. Blocks of probes go through ``jax.vmap(matvec)`` in
    chunks of ``batch_size``.
    """
    return _randomised_estimate(
        matvec,
        dim,
        params,
        key,
        num_probes,
        method,
        dtype,
        batch_size,
        lambda z, az: (z * az).sum(1),
    )


def frobenius_estimate(
    matvec: Matvec,
    dim: int,
    *params: Any,
    key: Array,
    num_probes: int,
    method: str = "hutchinson",
    dtype: Any = jnp.float32,
    batch_size: int | None = None,
) -> tuple[Array, Array]:
    """Randomised estimate of ``||A||_F² = E||A z||²`` (Rademacher z); ``(estimate, std. error)``.

    ``"hutch++"`` splits ``||A||_F² = ||A Q||_F² + ||A (I − QQᵀ)||_F²`` with Q = qr(A S), computing
    the first term exactly and the second by Hutchinson on deflated probes.
    """
    return _randomised_estimate(
        matvec,
        dim,
        params,
        key,
        num_probes,
        method,
        dtype,
        batch_size,
        lambda z, az: (az * az).sum(1),
    )
