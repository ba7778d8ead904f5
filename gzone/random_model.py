"""The random logit-gradient model of Fort & Ganguli (2019) as used in Sec. 4 of the ICML paper.

Per sample mu, the gradient of logit k with respect to the d trainable (subspace) coordinates is
modelled as ``c_k + e_k^mu``: a class mean ``c_k ~ N(0, sigma_c^2 I_d)`` shared by all samples plus
an iid residual ``e_k^mu ~ N(0, sigma_e^2 I_d)``. The paper further takes the ``c_k`` pairwise
orthogonal with ``||c_k||^2 = d sigma_c^2``. Everything here is a pure function of arrays:

* ``jr``: per-sample logit gradients in the subspace, shape (N, K, d) (row k of sample mu is the
  gradient of logit k of sample mu);
* ``probs``: softmax outputs, shape (K,) (one sample) or (N, K) (a batch).

Batches follow the paper (text under Eq. 8): the K x K matrix ``diag(p) - p p^T`` is replaced by its
batch average ``M = mean_mu [diag(p^mu) - p^mu p^mu^T]`` and ``1 - ||p||^2`` by its batch average,
which equals ``Tr M``.

Derivation of Eq. (8), also for batches. With ``t = Tr M = mean_mu (1 - ||p^mu||^2)`` and the
Eq. (7) matrix ``E = d sigma_c^2 [[M, 0], [0, 0]] + t sigma_e^2 I_d``::

    Tr E       = d sigma_c^2 t + d t sigma_e^2                    = d t (sigma_c^2 + sigma_e^2)
    ||E||_F^2  = d^2 sigma_c^4 ||M||_F^2 + 2 d sigma_c^2 sigma_e^2 t Tr M + d t^2 sigma_e^4
               = d t^2 (d sigma_c^4 Gamma_p^-2 + 2 sigma_c^2 sigma_e^2 + sigma_e^4)

with ``Gamma_p = Tr M / ||M||_F`` (Eq. 10). Their ratio is the printed Eq. (8). The only step that
could fail for a batch is ``Tr M = mean(1 - ||p||^2)``, and it holds by linearity of the trace
(the residual term of Eq. 7 is ``mean_mu E_e[E^T A^mu E] = sigma_e^2 mean_mu Tr(A^mu) I_d``), so
the printed Eq. (8) with the batch Gamma_p *is* the exact ``Tr/||.||_F`` of the batch Eq. (7)
matrix; one function serves both.

All public functions are jit-compiled; ``d``, ``reading``, ``unbiased``, ``s``, ``num_classes`` and
``dtype`` are static (Python values). Results keep the floating dtype of the inputs.

Numerics: ``p_k (1 - p_k)`` loses all precision for the largest entry of a near one-hot ``p``
(``1 - p_max`` cancels). For that entry ``1 - p_max`` is evaluated as the sum of the other entries,
exact for normalised ``p``; every other entry has ``p_k <= 1/2`` and no cancellation. Gamma_p is
computed as ``1 / ||M / Tr M||_F``, which neither overflows nor underflows.
"""

from __future__ import annotations

from functools import partial
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike, DTypeLike

from gzone.metrics import softmax_entropy  # noqa: F401  (re-exported: used with Γ_p)


class LogitGradientStats(NamedTuple):
    """Estimated parameters of the random model (see :func:`logit_gradient_stats`)."""

    sigma_c2: Array  # () variance per coordinate of the class means c_k
    sigma_e2: Array  # () variance per coordinate of the residuals e_k^mu
    class_means: Array  # (K, d) estimated c_k


@partial(jax.jit, static_argnames="unbiased")
def logit_gradient_stats(jr: ArrayLike, *, unbiased: bool = False) -> LogitGradientStats:
    """Estimates sigma_c^2 and sigma_e^2 of the random model from logit gradients ``jr`` (N, K, d).

    Estimator (``unbiased=False``, the moments the paper defines)::

        c_k      = (1/N) sum_mu jr[mu, k]                       (class means, (K, d))
        sigma_e2 = mean over (mu, k, j) of (jr[mu, k, j] - c_k[j])^2
        sigma_c2 = mean over (k, j) of c_k[j]^2                 (so ||c_k||^2 ~ d sigma_c2)

    Moments are about zero for ``c`` (the model's c_k have mean zero; the authors' notebook instead
    takes the Bessel-corrected variance of c about its grand mean, equal for large K d). The plain
    ``sigma_c2`` is biased up by ``sigma_e^2 / N`` (each estimated ``c_k`` carries the mean of N
    residuals) and ``sigma_e2`` down by a factor ``(N - 1) / N``. ``unbiased=True`` removes both:
    ``sigma_e2 * N / (N - 1)`` and ``max(sigma_c2 - sigma_e2 / N, 0)`` (needs N >= 2).
    """
    jr = jnp.asarray(jr)
    if jr.ndim != 3:
        raise ValueError(f"jr must have shape (N, K, d); got shape {jr.shape}")
    n = jr.shape[0]
    if unbiased and n < 2:
        raise ValueError("unbiased=True needs at least N = 2 samples")
    class_means = jnp.mean(jr, axis=0)
    sigma_e2 = jnp.mean(jnp.square(jr - class_means))
    sigma_c2 = jnp.mean(jnp.square(class_means))
    if unbiased:
        sigma_e2 = sigma_e2 * n / (n - 1)
        sigma_c2 = jnp.maximum(sigma_c2 - sigma_e2 / n, 0)
    return LogitGradientStats(sigma_c2, sigma_e2, class_means)


def _as_batch(probs: ArrayLike) -> Array:
    """Softmax outputs as an (N, K) batch; a single (K,) vector becomes N = 1."""
    probs = jnp.asarray(probs)
    if probs.ndim not in (1, 2):
        raise ValueError(f"probs must have shape (K,) or (N, K); got shape {probs.shape}")
    return jnp.atleast_2d(probs)


def _one_minus(p: Array) -> Array:
    """``1 - p``; each row's largest entry gets the sum of the other entries (no cancellation)."""
    is_max = jnp.arange(p.shape[-1]) == jnp.argmax(p, axis=-1, keepdims=True)
    rest = jnp.sum(jnp.where(is_max, 0, p), axis=-1, keepdims=True)
    return jnp.where(is_max, rest, 1 - p)


def _hessian_and_trace(probs: ArrayLike) -> tuple[Array, Array]:
    """Batch-averaged ``M = mean diag(p) - p p^T`` (K, K) and ``Tr M = mean(1 - ||p||^2)``."""
    p = _as_batch(probs)
    diagonal = jnp.mean(p * _one_minus(p), axis=0)
    m = -jnp.einsum("nk,nl->kl", p, p) / p.shape[0]
    eye = jnp.eye(p.shape[-1], dtype=bool)
    return jnp.where(eye, diagonal, m), jnp.sum(diagonal)


@jax.jit
def psd_softmax_hessian(probs: ArrayLike) -> Array:
    """Batch average ``M`` of the cross-entropy logit Hessian ``diag(p) - p p^T`` (Eq. 4), (K, K).

    ``probs`` is (K,) or (N, K); the average over samples is the one under Eq. (8).
    """
    return _hessian_and_trace(probs)[0]


@jax.jit
def softmax_hessian_eigenvalues(probs: ArrayLike) -> Array:
    """Eigenvalues lambda~ of :func:`psd_softmax_hessian`, descending, clipped at 0, shape (K,).

    The last one is 0 up to round-off (the all-ones vector is a null vector of ``M``).
    """
    m = psd_softmax_hessian(probs)
    return jnp.maximum(jnp.linalg.eigvalsh(m)[::-1], 0)


@jax.jit
def gamma_p(probs: ArrayLike) -> Array:
    """Gamma_p: positive curvature ``Tr M / ||M||_F`` of the batch-averaged ``M`` (Eq. 10), ().

    Closed form from the elements of ``M`` (no eigenvalues); ``probs`` is (K,) or (N, K).
    Gamma_p lies in [1, sqrt(K - 1)] (rank of M <= K - 1), sqrt(K - 1) at uniform p. It is 0/0,
    undefined, when every ``p`` is one-hot (``M = 0``): then the result is ``nan``, never a number;
    see :func:`gamma_p_is_defined`.
    """
    m, trace = _hessian_and_trace(probs)
    defined = trace > 0
    safe_trace = jnp.where(defined, trace, 1)
    return jnp.where(defined, 1 / jnp.linalg.norm(m / safe_trace), jnp.nan)


@jax.jit
def gamma_p_is_defined(probs: ArrayLike) -> Array:
    """Whether :func:`gamma_p` is defined: ``Tr M > 0``, i.e. some ``p`` is not one-hot. () bool."""
    return _hessian_and_trace(probs)[1] > 0


def _check_dim(d: int, num_classes: int) -> int:
    d = int(d)
    if d < num_classes:
        raise ValueError(
            f"the random model needs d >= K to hold K orthogonal class means; got d={d} < K="
            f"{num_classes}"
        )
    return d


@partial(jax.jit, static_argnames="d")
def expected_gterm(probs: ArrayLike, sigma_c2: ArrayLike, sigma_e2: ArrayLike, d: int) -> Array:
    """Expected G-term of Eq. (7), (d, d), in the basis of the normalised class means.

    ``d sigma_c2 [[M, 0], [0, 0]] + Tr(M) sigma_e2 I_d`` with ``M`` the batch-averaged
    ``diag(p) - p p^T`` (K, K) in the leading block and ``Tr M = mean(1 - ||p||^2)``. ``d`` is the
    dimension of the (sub)space the gradients live in; ``d >= K`` (else ``ValueError``).
    """
    m, trace = _hessian_and_trace(probs)
    k = m.shape[0]
    d = _check_dim(d, k)
    sigma_c2 = jnp.asarray(sigma_c2, m.dtype)
    sigma_e2 = jnp.asarray(sigma_e2, m.dtype)
    block = jnp.zeros((d, d), m.dtype).at[:k, :k].set(d * sigma_c2 * m)
    return block + trace * sigma_e2 * jnp.eye(d, dtype=m.dtype)


@partial(jax.jit, static_argnames="d")
def expected_gterm_eigenvalues(
    probs: ArrayLike, sigma_c2: ArrayLike, sigma_e2: ArrayLike, d: int
) -> Array:
    """Eigenvalues of the Eq. (7) matrix in closed form (Appendix B), descending, shape (d,).

    ``Tr(M) sigma_e2 + d sigma_c2 lambda~_i`` for ``i <= K - 1`` (lambda~ from
    :func:`softmax_hessian_eigenvalues`) and the bulk ``Tr(M) sigma_e2`` for the other
    ``d - K + 1``. (Appendix B prints ``d sigma_e^2 lambda~_i``; Eq. (7) gives ``d sigma_c^2``.)
    """
    m, trace = _hessian_and_trace(probs)
    k = m.shape[0]
    d = _check_dim(d, k)
    lam = jnp.maximum(jnp.linalg.eigvalsh(m)[::-1][: k - 1], 0)
    sigma_c2 = jnp.asarray(sigma_c2, m.dtype)
    bulk = jnp.full((d,), trace * jnp.asarray(sigma_e2, m.dtype))
    return bulk.at[: k - 1].add(d * sigma_c2 * lam)


@partial(jax.jit, static_argnames="d")
def expected_gterm_curvature(
    probs: ArrayLike, sigma_c2: ArrayLike, sigma_e2: ArrayLike, d: int
) -> Array:
    """Positive curvature of the expected G-term, Eq. (8), ().

    ``sqrt(d) (sigma_c2 + sigma_e2) / sqrt(sigma_e2^2 + 2 sigma_e2 sigma_c2 + d sigma_c2^2
    Gamma_p^-2)`` with the batch Gamma_p: exactly ``Tr/||.||_F`` of :func:`expected_gterm`, for a
    single ``p`` and for batches (derivation in the module docstring), hence in [1, sqrt(d)].

    ``d`` is the dimension of the subspace the curvature is measured in (50 in Fig. 3), not the
    parameter count P: the authors' notebook passes P, which can exceed the bound sqrt(d).
    ``nan`` where Gamma_p is undefined (all ``p`` one-hot) or ``sigma_c2 = sigma_e2 = 0``;
    ``d >= K`` (else ``ValueError``).
    """
    gamma = gamma_p(probs)
    d = _check_dim(d, jnp.shape(probs)[-1])
    sigma_c2 = jnp.asarray(sigma_c2, gamma.dtype)
    sigma_e2 = jnp.asarray(sigma_e2, gamma.dtype)
    # Eq. (8) divided through by (sigma_c2 + sigma_e2): scale-free, no overflow for huge sigmas.
    a = sigma_c2 / (sigma_c2 + sigma_e2)
    b = sigma_e2 / (sigma_c2 + sigma_e2)
    return jnp.sqrt(d / (b**2 + 2 * a * b + d * jnp.square(a / gamma)))


def _class_prior(labels_or_prior: ArrayLike, num_classes: int) -> Array:
    """Q: integer labels (N,) or one-hot labels (N, K) are averaged; a float (K,) is Q itself.

    Integer labels must lie in [0, K) (out-of-range indices are clamped under jit, not checked).
    """
    q = jnp.asarray(labels_or_prior)
    if jnp.issubdtype(q.dtype, jnp.integer) and q.ndim == 1:
        q = jnp.eye(num_classes)[q]
    if q.ndim == 2:
        q = jnp.mean(q, axis=0)
    if q.shape != (num_classes,):
        raise ValueError(
            f"expected integer labels (N,), one-hot labels (N, {num_classes}) or a prior "
            f"({num_classes},); got shape {jnp.shape(labels_or_prior)}"
        )
    return q


@partial(jax.jit, static_argnames=("d", "reading"))
def expected_gradient_norm(
    probs: ArrayLike,
    labels_or_prior: ArrayLike,
    sigma_c2: ArrayLike,
    d: int,
    *,
    reading: Literal["exact", "paper"] = "exact",
) -> Array:
    """Norm of the expected batch loss gradient of Eq. (9), ``sum_k c_k (Q^_k - Q_k)``, ().

    ``Q^ = mean p`` (``probs`` (K,) or (N, K)); ``Q`` from ``labels_or_prior`` (integer labels (N,),
    one-hot (N, K), or a float prior (K,)). With orthogonal ``c_k`` of squared length
    ``d sigma_c2`` the norm is ``sqrt(d sigma_c2) ||Q^ - Q||`` (``reading="exact"``). The paper
    prints ``d sigma_c^2 ||Q^ - Q||`` (``reading="paper"``), the factor of the *squared* norm; the
    two differ unless ``d sigma_c2 = 1``. ``d`` is the dimension the gradient lives in (P in
    Fig. 5), ``d >= K``.
    """
    q_hat = jnp.mean(_as_batch(probs), axis=0)
    k = q_hat.shape[0]
    d = _check_dim(d, k)
    gap = jnp.linalg.norm(q_hat - _class_prior(labels_or_prior, k).astype(q_hat.dtype))
    scale = d * jnp.asarray(sigma_c2, q_hat.dtype)
    if reading == "exact":
        return jnp.sqrt(scale) * gap
    if reading == "paper":
        return scale * gap
    raise ValueError(f"reading must be 'exact' or 'paper'; got {reading!r}")


@partial(jax.jit, static_argnames=("s", "num_classes", "dtype"))
def p_s_eps(s: int, eps: ArrayLike, num_classes: int, dtype: DTypeLike | None = None) -> Array:
    """The distribution p(S, eps) of Appendix C, shape (K,).

    ``p_k = eps`` for the first ``S - 1`` classes, ``p_S = 1 - (S - 1) eps``, zero for the rest;
    ``2 <= S <= K``.
    """
    if not 2 <= s <= num_classes:
        raise ValueError(f"need 2 <= S <= K; got S={s}, K={num_classes}")
    eps = jnp.asarray(eps, dtype)
    k = jnp.arange(num_classes)
    return jnp.where(k < s - 1, eps, jnp.where(k == s - 1, 1 - (s - 1) * eps, 0)).astype(eps.dtype)
