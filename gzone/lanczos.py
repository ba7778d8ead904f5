"""Matrix-free spectral tools for symmetric operators given as matvecs ``v -> A v`` (1-D, length dim).

* :func:`lanczos_tridiag` — Lanczos tridiagonalisation with full reorthogonalisation (vectorised
  two-pass classical Gram–Schmidt against the stored basis) and a breakdown guard that restarts
  with a fresh random vector instead of dividing by a vanishing beta (Lanczos 1950; Paige 1972;
  Golub & Van Loan, *Matrix Computations*, Sec. 10.1).
* :func:`eigsh` — extreme eigenpairs (``"LA"``, ``"SA"``, ``"LM"``) with true residual norms.
* :func:`slq_quadrature`, :func:`density_from_quadrature`, :func:`spectral_density` — stochastic
  Lanczos quadrature (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019).
* Hutchinson-type trace and Frobenius estimators live in :mod:`gzone.hutchinson` (same operators,
  dtypes and probes).

The operator may be indefinite and rank-deficient. Dtypes: every entry point works in the dtype of its inputs unless one is given: ``v0``'s dtype
where a start vector is passed, else the dtype of the operator's output (found with
``jax.eval_shape``, nothing is computed), so a float64 operator is never silently run in float32.
A ``dtype`` that is given is honoured as given — also one lower than the operator's, e.g.
``dtype=jnp.float32`` for a float64 Hessian: the vectors fed to the matvec and every result are
then in that dtype, visibly. The Lanczos recurrence (basis, alphas, betas, Gram–Schmidt) may run in
a wider ``reorth_dtype`` such as float64, which requires ``jax.config.update("jax_enable_x64",
True)`` (never switched on by this module).

Drivers. ``driver="fori"`` runs the whole iteration in one jitted ``lax.fori_loop`` (no host
sync). ``driver="host"`` runs a Python loop over one jitted Lanczos step with donated state.
``driver="auto"`` picks ``"host"`` on CPU and ``"fori"`` elsewhere: on CPU, XLA compiles
convolutions inside loop bodies much less efficiently (a LeNet-5 Hessian-vector product ran ~7x
slower inside ``fori_loop`` than jitted alone), whereas on GPU/TPU the fused loop avoids per-step
dispatch. Both drivers execute the same step function and agree to rounding.

Matvecs have the form ``matvec(v, *params)`` (matfree style; a plain ``v -> A v`` needs no
params), or are an :class:`Operator`, which binds such a function to its operands. Compiled code is
cached by jax per matvec *function* (a static argument) and per array shape, so pass one fixed
function and feed what changes between calls (network parameters, data batches) through
``*params`` or an :class:`Operator`'s operands: nothing is recompiled. A fresh closure per call
recompiles each time (and jax's cache keeps it, with whatever it captured, alive). Building blocks, composed by :func:`eigsh`, :func:`slq_quadrature`, :func:`spectral_density` and
:mod:`gzone.fullspace`: :func:`lanczos_tridiag`, :func:`select_ritz`, :func:`gauss_quadrature`,
:func:`residual_norms`, :func:`probe_vector`, :func:`density_grid` and
:func:`density_from_quadrature` (one width rule), :func:`apply` and :func:`apply_block`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
Matvec = Callable[..., Array]  # matvec(v, *params) -> A v

DRIVERS = ("auto", "host", "fori")
WHICH = ("LA", "SA", "LM")
PROBES = ("rademacher", "gaussian")


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


@jax.tree_util.register_pytree_node_class
class Operator:
    """A matvec bound to its operands: ``op(v) = matvec(v, *operands)``.

    Every function of this module unpacks it, so the compiled programs are keyed on ``matvec``
    alone and one compilation serves operators with new operand *values* (another α, T or seed).
    A pytree (``matvec`` static, ``operands`` leaves), so it can also be passed through ``jax.jit``.
    """

    def __init__(self, matvec: Matvec, operands: tuple = ()) -> None:
        self.matvec = matvec
        self.operands = tuple(operands)

    def __call__(self, v: Array) -> Array:
        return self.matvec(v, *self.operands)

    def tree_flatten(self) -> tuple[tuple, Matvec]:
        return self.operands, self.matvec

    @classmethod
    def tree_unflatten(cls, matvec: Matvec, operands: tuple) -> Operator:
        return cls(matvec, operands)

    def __repr__(self) -> str:
        name = getattr(self.matvec, "__name__", type(self.matvec).__name__)
        return f"Operator({name}, {len(self.operands)} operands)"


def unpack(matvec: Matvec | Operator, params: tuple = ()) -> tuple[Matvec, tuple]:
    """(function, operands): an :class:`Operator`'s matvec and operands followed by ``params``,
    or a plain matvec with ``params`` unchanged."""
    if isinstance(matvec, Operator):
        return matvec.matvec, (*matvec.operands, *params)
    return matvec, tuple(params)


def operator_dtype(matvec: Matvec | Operator, dim: int, *params: Any) -> jnp.dtype:
    """The dtype of ``matvec(v, *params)`` for a float32 ``v`` of length ``dim``, by
    ``jax.eval_shape`` (nothing is computed): float64 for an operator built on float64 arrays."""
    fn, params = unpack(matvec, params)
    out = jax.eval_shape(lambda v, *p: fn(v, *p), jax.ShapeDtypeStruct((dim,), jnp.float32), *params)
    dtype = jnp.dtype(out.dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"the operator returns {dtype} vectors; a floating dtype is needed")
    return dtype


def working_dtype(
    matvec: Matvec | Operator, dim: int, params: tuple, dtype: Any = None, v0: Array | None = None
) -> jnp.dtype:
    """The dtype an entry point computes in: ``dtype`` when given (honoured as given, also when
    lower than the operator's), else ``v0``'s dtype, else the operator's output dtype."""
    if dtype is not None:
        return _check_dtype(dtype, "dtype")
    if v0 is not None and jnp.issubdtype(jnp.result_type(v0), jnp.floating):
        return _check_dtype(jnp.result_type(v0), "v0 dtype")
    return _check_dtype(operator_dtype(matvec, dim, *params), "the operator's dtype")


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


def check_positive(name: str, value: Any) -> int:
    """``value`` as an int, or a ValueError naming ``name`` unless it is a positive integer."""
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def apply_block(
    matvec: Matvec | Operator, vectors: Array, *params: Any, batch_size: int | None = None
) -> Array:
    """Rows of ``A Vᵀ`` for a (n, dim) block V via ``jax.vmap(matvec)``, in chunks of batch_size."""
    matvec, params = unpack(matvec, params)
    n = vectors.shape[0]
    if batch_size is None or batch_size >= n:
        return _apply_chunk(matvec, vectors, *params)
    batch_size = check_positive("batch_size", batch_size)
    padded = jnp.pad(vectors, ((0, -n % batch_size), (0, 0)))  # one compiled shape for all chunks
    chunks = [
        _apply_chunk(matvec, padded[i : i + batch_size], *params)
        for i in range(0, padded.shape[0], batch_size)
    ]
    return jnp.concatenate(chunks)[:n]


@partial(jax.jit, static_argnums=0)
def _apply_chunk(matvec: Matvec, vectors: Array, *params: Any) -> Array:
    return jax.vmap(lambda v: matvec(v, *params))(vectors)


@partial(jax.jit, static_argnums=0)
def _apply_one(matvec: Matvec, v: Array, *params: Any) -> Array:
    return matvec(v, *params)


def apply(matvec: Matvec | Operator, v: Array, *params: Any) -> Array:
    """A v: one jit-compiled product per (matvec function, shapes), shared by every estimator."""
    matvec, params = unpack(matvec, params)
    return _apply_one(matvec, v, *params)


def tridiagonal(alphas: Array, betas: Array) -> Array:
    """Dense symmetric (m, m) tridiagonal matrix T from the Lanczos coefficients."""
    off = betas[: alphas.shape[0] - 1]
    return jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)


@jax.jit
def _ritz(alphas: Array, betas: Array) -> tuple[Array, Array]:
    t = tridiagonal(alphas, betas)
    return jnp.linalg.eigh((t + t.T) / 2)


def gauss_quadrature(alphas: Array, betas: Array) -> tuple[Array, Array]:
    """Gauss quadrature rule of a Lanczos run: nodes θ (eigenvalues of T = S diag(θ) Sᵀ, ascending)
    and weights ``S[0]**2`` (they sum to 1), so that q₁ᵀ f(A) q₁ ≈ Σ_i w_i f(θ_i)."""
    theta, s = _ritz(alphas, betas)
    return theta, s[0] ** 2


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
    stop: tuple[str, int, float] | None = None,
) -> tuple[LanczosResult, int]:
    """``num_iters`` steps, and the number taken. With ``stop = (which, k, tol)`` a host loop that
    ends after the first step m at which the ``k`` selected Ritz pairs have residual estimates
    ≤ tol·|θ|; the result then keeps its full shapes with T_m's tail decoupled
    (:func:`_decouple_tail`: the same compiled programs serve every m)."""
    state = _lanczos_init(v0, key, num_iters, rdtype)
    if stop is None and _resolve_driver(driver) == "fori":
        state = _lanczos_fori(matvec, v0.dtype, num_iters, state, *params)
        return LanczosResult(state.alphas, state.betas, state.basis), num_iters
    for j in range(num_iters):
        state = _lanczos_step_jit(matvec, v0.dtype, j, state, *params)
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
    matvec, params = unpack(matvec, params)
    v0 = jnp.asarray(v0)
    if v0.ndim != 1:
        raise ValueError(f"v0 must be a 1-D vector, got shape {v0.shape}")
    dim = v0.shape[0]
    num_iters = check_positive("num_iters", num_iters)
    if num_iters > dim:
        raise ValueError(f"num_iters={num_iters} exceeds the dimension {dim}")
    mdtype = _check_dtype(v0.dtype, "v0 dtype")
    rdtype = mdtype if reorth_dtype is None else _check_dtype(reorth_dtype, "reorth_dtype")
    key = jax.random.PRNGKey(0) if key is None else key
    return _run_lanczos(matvec, params, v0, key, num_iters, rdtype, driver)[0]


# ----------------------------------------------------------------------------------- Ritz pairs


@partial(jax.jit, static_argnums=(3, 4))
def _select_ritz(
    alphas: Array, betas: Array, basis: Array, which: str, k: int
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
    dtype = vectors.dtype if dtype is None else _check_dtype(dtype, "dtype")
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
    rdtype = mdtype if reorth_dtype is None else _check_dtype(reorth_dtype, "reorth_dtype")
    _resolve_driver(driver)
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


# ----------------------------------------------------------------------------------- SLQ


@partial(jax.jit, static_argnums=(2, 3))
def _probe32(key: Array, i: int, dim: int, kind: str) -> Array:
    key = jax.random.fold_in(key, i)
    if kind == "rademacher":
        return jax.random.rademacher(key, (dim,), jnp.float32)
    return jax.random.normal(key, (dim,), jnp.float32)


def probe_vector(key: Array, i: int, dim: int, dtype: Any, kind: str = "rademacher") -> Array:
    """Probe vector number i (Rademacher ±1 or standard Gaussian), drawn from ``fold_in(key, i)``
    in float32 and cast to ``dtype``: the same numbers in every dtype, and one compilation per
    (dim, kind) whatever the number of probes or the dtype."""
    if kind not in PROBES:
        raise ValueError(f"unknown probe {kind!r}; choose one of {', '.join(PROBES)}")
    return _probe32(key, i, dim, kind).astype(dtype)



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
    rdtype = mdtype if reorth_dtype is None else _check_dtype(reorth_dtype, "reorth_dtype")
    _resolve_driver(driver)
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
    density = jnp.einsum("pm,pmg->g", weights, kernel) / nodes.shape[0]
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


