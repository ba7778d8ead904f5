"""The Lanczos recurrence of :mod:`gzone.lanczos`: tridiagonalisation with full
reorthogonalisation and a breakdown guard (:func:`lanczos_tridiag`, two drivers: one jitted
``fori_loop`` or a host loop over one jitted step), Ritz pairs and their true residuals, and
:func:`eigsh` (extreme eigenpairs, with an early stop on the Ritz residual estimates).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gzone.lanczos.operator import (
    PRECISION,
    Array,
    Matvec,
    Operator,
    apply,
    apply_block,
    check_dtype,
    check_positive,
    check_precision,
    probe_vector,
    resolve_driver,
    unpack,
    working_dtype,
)

WHICH = ("LA", "SA", "LM")


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
    """Ritz pairs from :func:`eigsh`: eigenvalues (k,), eigenvectors (dim, k), residual norms (k,),
    and the Lanczos steps taken (``num_iters``, or fewer when ``tol`` stopped it early)."""

    eigenvalues: Array
    eigenvectors: Array
    residual_norms: Array
    num_iters: int = -1


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


def _lanczos_step(matvec: Matvec, mdtype: Any, precision: str, j: Array, state: _State,
                  *params: Any) -> _State:
    """Lanczos step j (0-based): q_{j+2}, alpha_{j+1}, beta_{j+1} with full reorthogonalisation."""
    with jax.default_matmul_precision(precision):
        w = matvec(state.basis[j].astype(mdtype), *params)
    return _lanczos_update(mdtype, precision, j, state, w)


def _lanczos_update(mdtype: Any, precision: str, j: Array, state: _State, w: Array) -> _State:
    """The rest of Lanczos step j once w = A q_{j+1} is known: reorthogonalise, α, β, q_{j+2}
    (matrix products at ``precision``: :data:`gzone.lanczos.PRECISION` unless asked otherwise)."""
    with jax.default_matmul_precision(precision):
        return _lanczos_update_body(mdtype, j, state, w)


def _lanczos_update_body(mdtype: Any, j: Array, state: _State, w: Array) -> _State:
    basis = state.basis
    rdtype, (size, dim) = basis.dtype, basis.shape
    mask = (jnp.arange(size) <= j).astype(rdtype)  # q_1 … q_{j+1}

    def orthogonalise(w: Array) -> tuple[Array, Array]:
        # two-pass classical Gram–Schmidt against the stored basis: two gemvs per pass
        h1 = (basis @ w) * mask
        w = w - h1 @ basis
        h2 = (basis @ w) * mask
        return w - h2 @ basis, h1 + h2

    w = w.astype(rdtype)
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


# host driver: the matvec's own compiled program (the one Hutchinson and the residuals call too:
# a term compiles its product once), then one compiled update shared by every operator of the
# same shapes; the state (incl. the basis) is donated
_lanczos_update_jit = jax.jit(_lanczos_update, static_argnums=(0, 1), donate_argnums=3)


@partial(jax.jit, static_argnums=(1,))
def _basis_row(basis: Array, mdtype: Any, j: Array) -> Array:
    return basis[j].astype(mdtype)


def _lanczos_step_host(matvec: Matvec, mdtype: Any, j: int, state: _State, *params: Any,
                       precision: str = PRECISION) -> _State:
    """Lanczos step j from the host: w = A q_{j+1} by the matvec's own program, then the update."""
    w = apply(matvec, _basis_row(state.basis, mdtype, jnp.int32(j)), *params)
    return _lanczos_update_jit(mdtype, precision, jnp.int32(j), state, w)


@partial(jax.jit, static_argnums=(0, 1, 2, 3), donate_argnums=4)
def _lanczos_fori(
    matvec: Matvec, mdtype: Any, precision: str, num_iters: int, state: _State, *params: Any
) -> _State:
    step = partial(_lanczos_step, matvec, mdtype, precision)
    return lax.fori_loop(0, num_iters, lambda j, s: step(j, s, *params), state)


def _ritz_estimates(alphas: Any, betas: Any, which: str, k: int) -> tuple[Any, Any]:
    """The ``k`` selected Ritz values of T_m and their residual norms |β_m s_m,i| (the Lanczos
    relation A Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ; exact up to rounding with full
    reorthogonalisation), on the host in float64 (T_m is m × m, m ≤ num_iters)."""
    a, b = np.asarray(alphas, np.float64), np.asarray(betas, np.float64)
    m = a.shape[0]
    t = np.diag(a) + np.diag(b[: m - 1], 1) + np.diag(b[: m - 1], -1)
    theta, s = np.linalg.eigh(t)
    if which == "LA":
        idx = np.arange(m - 1, m - 1 - k, -1)
    elif which == "SA":
        idx = np.arange(k)
    else:
        idx = np.argsort(-np.abs(theta), kind="stable")[:k]
    return theta[idx], np.abs(b[m - 1] * s[m - 1, idx])


@partial(jax.jit, static_argnums=3)
def _decouple_tail(alphas: Array, betas: Array, m: Array, which: str) -> tuple[Array, Array]:
    """T_m padded to the full size with a decoupled diagonal block whose eigenvalues are never
    selected by ``which`` (0 for LM; below / above every Ritz value, by Gershgorin, for LA / SA),
    so that Ritz pairs of a run stopped after ``m`` steps come from one compiled program."""
    keep = jnp.arange(alphas.shape[0]) < m
    spread = 2 * jnp.max(jnp.where(keep, jnp.abs(betas), 0)) + 1
    low = jnp.min(jnp.where(keep, alphas, jnp.inf)) - spread
    high = jnp.max(jnp.where(keep, alphas, -jnp.inf)) + spread
    pad = {"LM": jnp.zeros((), alphas.dtype), "LA": low, "SA": high}[which]
    return jnp.where(keep, alphas, pad), jnp.where(jnp.arange(betas.shape[0]) < m - 1, betas, 0)


def _run_lanczos(
    matvec: Matvec, params: tuple, v0: Array, key: Array, num_iters: int, rdtype: Any, driver: str,
    stop: tuple[str, int, float] | None = None, precision: str = PRECISION,
) -> tuple[LanczosResult, int]:
    """``num_iters`` steps, and the number taken. With ``stop = (which, k, tol)`` a host loop that
    ends after the first step m at which the ``k`` selected Ritz pairs have residual estimates
    ≤ tol·|θ|; the result then keeps its full shapes with T_m's tail decoupled
    (:func:`_decouple_tail`: the same compiled programs serve every m)."""
    state = _lanczos_init(v0, key, num_iters, rdtype)
    if stop is None and resolve_driver(driver) == "fori":
        state = _lanczos_fori(matvec, v0.dtype, precision, num_iters, state, *params)
        return LanczosResult(state.alphas, state.betas, state.basis), num_iters
    for j in range(num_iters):
        state = _lanczos_step_host(matvec, v0.dtype, j, state, *params, precision=precision)
        if stop is not None and j + 1 >= stop[1] and j + 1 < num_iters:
            m = j + 1
            a, b = jax.device_get((state.alphas, state.betas))
            theta, estimate = _ritz_estimates(a[:m], b[:m], stop[0], stop[1])
            if bool((estimate <= stop[2] * abs(theta)).all()):
                alphas, betas = _decouple_tail(state.alphas, state.betas, jnp.int32(m), stop[0])
                return LanczosResult(alphas, betas, state.basis), m
    return LanczosResult(state.alphas, state.betas, state.basis), num_iters


def lanczos_tridiag(
    matvec: Matvec | Operator,
    v0: Array,
    num_iters: int,
    *params: Any,
    key: Array | None = None,
    reorth_dtype: Any = None,
    driver: str = "auto",
    precision: str = PRECISION,
) -> LanczosResult:
    """``num_iters`` Lanczos steps on the symmetric operator ``v -> matvec(v, *params)`` from ``v0``.

    Full reorthogonalisation (two-pass classical Gram–Schmidt against the whole stored basis) keeps
    the basis orthonormal to working precision. When beta falls below
    ``eps(matvec dtype) * sqrt(dim) * max_j ||A q_j||`` (an invariant subspace was found, e.g. a
    rank-deficient operator or ``v0`` in an eigenspace), that beta is set to 0 and the iteration
    continues from a fresh pseudo-random vector (seeded by ``key``, default ``PRNGKey(0)``)
    orthogonalised against the basis; no NaNs are produced. A zero ``v0`` is replaced by the
    normalised all-ones vector. The matvec runs in ``v0.dtype``; the recurrence in
    ``reorth_dtype`` (default ``v0.dtype``). Requires ``1 <= num_iters <= dim``. ``precision``:
    of the recurrence's matrix products (Gram–Schmidt), ``"highest"`` (full float32 on every
    backend: :mod:`gzone.precision`) unless asked otherwise, e.g. ``"default"`` (TF32 on recent
    NVIDIA GPUs) to measure what it costs in orthogonality.
    """
    matvec, params = unpack(matvec, params)
    v0 = jnp.asarray(v0)
    if v0.ndim != 1:
        raise ValueError(f"v0 must be a 1-D vector, got shape {v0.shape}")
    dim = v0.shape[0]
    num_iters = check_positive("num_iters", num_iters)
    if num_iters > dim:
        raise ValueError(f"num_iters={num_iters} exceeds the dimension {dim}")
    mdtype = check_dtype(v0.dtype, "v0 dtype")
    rdtype = mdtype if reorth_dtype is None else check_dtype(reorth_dtype, "reorth_dtype")
    key = jax.random.PRNGKey(0) if key is None else key
    return _run_lanczos(matvec, params, v0, key, num_iters, rdtype, driver,
                        precision=check_precision(precision))[0]


# ----------------------------------------------------------------------------------- Ritz pairs


@partial(jax.jit, static_argnums=(3, 4))
def _select_ritz(
    alphas: Array, betas: Array, basis: Array, which: str, k: int
) -> tuple[Array, Array]:
    with jax.default_matmul_precision(PRECISION):
        return _select_ritz_body(alphas, betas, basis, which, k)


def _select_ritz_body(alphas: Array, betas: Array, basis: Array, which: str, k: int
                      ) -> tuple[Array, Array]:
    theta, s = _ritz(alphas, betas)  # ascending
    m = alphas.shape[0]
    if which == "LA":
        idx = jnp.arange(m - 1, m - 1 - k, -1)
    elif which == "SA":
        idx = jnp.arange(k)
    else:  # LM
        idx = jnp.argsort(-jnp.abs(theta), stable=True)[:k]
    vectors = basis[:m].T @ s[:, idx]  # (dim, k)
    return theta[idx], vectors / jnp.linalg.norm(vectors, axis=0, keepdims=True)


def select_ritz(result: LanczosResult, k: int, which: str = "LA") -> tuple[Array, Array]:
    """The ``k`` extreme Ritz pairs of a Lanczos run: values (k,) and unit vectors (dim, k).

    ``which``: ``"LA"`` largest algebraic (descending), ``"SA"`` smallest algebraic (ascending),
    ``"LM"`` largest magnitude (descending |θ|). Both ends converge in the same Krylov space, so
    one run serves ``"LA"`` and ``"SA"`` alike (:mod:`gzone.fullspace` takes both).
    """
    if which not in WHICH:
        raise ValueError(f"unknown which={which!r}; choose one of {', '.join(WHICH)}")
    k = check_positive("k", k)
    if k > result.alphas.shape[0]:
        raise ValueError(f"k={k} exceeds the {result.alphas.shape[0]} Lanczos iterations")
    return _select_ritz(result.alphas, result.betas, result.basis, which, k)


@jax.jit
def _residual_norms(av: Array, vectors: Array, values: Array) -> Array:
    return jnp.linalg.norm(av.astype(vectors.dtype) - values[:, None] * vectors, axis=1)


def residual_norms(
    matvec: Matvec | Operator, values: Array, vectors: Array, *params: Any,
    dtype: Any = None, batch_size: int | None = None,
) -> Array:
    """True residual norms ``||A y − θ y||`` (k,) of Ritz pairs (values (k,), vectors (dim, k)),
    with ``k`` real matvecs (``jax.vmap``, chunks of ``batch_size``) run in ``dtype`` (default: the
    vectors' dtype); the norms are in the vectors' dtype."""
    dtype = vectors.dtype if dtype is None else check_dtype(dtype, "dtype")
    av = apply_block(matvec, vectors.T.astype(dtype), *params, batch_size=batch_size)
    return _residual_norms(av, vectors.T, values)


# ----------------------------------------------------------------------------------- eigsh


def eigsh(
    matvec: Matvec | Operator,
    dim: int,
    k: int,
    *params: Any,
    key: Array,
    num_iters: int | None = None,
    which: str = "LA",
    dtype: Any = None,
    reorth_dtype: Any = None,
    driver: str = "auto",
    v0: Array | None = None,
    batch_size: int | None = None,
    tol: float | None = None,
) -> EigshResult:
    """``k`` extreme eigenpairs of the symmetric operator ``v -> matvec(v, *params)`` by Lanczos.

    ``which``: ``"LA"`` largest algebraic (returned in descending order), ``"SA"`` smallest
    algebraic (ascending), ``"LM"`` largest magnitude (descending |λ|). The start vector is a
    normalised Gaussian drawn from ``key`` (or ``v0`` if given). ``num_iters`` defaults to
    ``min(dim, max(2k + 20, 50))`` and must satisfy ``k <= num_iters <= dim``. Residual norms
    ``||A v - λ v||`` are computed with ``k`` real matvecs (``jax.vmap``, chunks of
    ``batch_size``). The matvec runs in ``dtype`` (default: ``v0``'s, else the operator's output
    dtype); the outputs are in the recurrence dtype (``reorth_dtype``, default ``dtype``).
    ``tol``: stop early, after the first step at which every selected Ritz pair has a Lanczos
    residual estimate |β_m s_m| ≤ ``tol``·|θ| (``num_iters`` is then a cap; the loop runs on the
    host, one sync per step); :attr:`EigshResult.num_iters` says how many steps were taken.
    """
    matvec, params = unpack(matvec, params)
    dim, k = check_positive("dim", dim), check_positive("k", k)
    if k > dim:
        raise ValueError(f"k={k} exceeds the dimension {dim}")
    if which not in WHICH:
        raise ValueError(f"unknown which={which!r}; choose one of {', '.join(WHICH)}")
    num_iters = min(dim, max(2 * k + 20, 50)) if num_iters is None else num_iters
    num_iters = check_positive("num_iters", num_iters)
    if not k <= num_iters <= dim:
        raise ValueError(f"need k <= num_iters <= dim, got k={k}, num_iters={num_iters}, dim={dim}")
    mdtype = working_dtype(matvec, dim, params, dtype, v0)
    rdtype = mdtype if reorth_dtype is None else check_dtype(reorth_dtype, "reorth_dtype")
    resolve_driver(driver)
    key_start, key_restart = jax.random.split(key)
    if v0 is None:
        v0 = probe_vector(key_start, 0, dim, mdtype, "gaussian")
    elif jnp.shape(v0) != (dim,):
        raise ValueError(f"v0 must have shape ({dim},), got {jnp.shape(v0)}")

    if tol is not None and not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0 or None, got {tol!r}")
    v0 = jnp.asarray(v0, mdtype)
    stop = None if tol is None else (which, k, float(tol))
    result, steps = _run_lanczos(matvec, params, v0, key_restart, num_iters, rdtype, driver, stop)
    values, vectors = select_ritz(result, k, which)
    residuals = residual_norms(matvec, values, vectors, *params, dtype=mdtype, batch_size=batch_size)
    return EigshResult(values, vectors, residuals, steps)
