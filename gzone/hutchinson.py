"""Randomised (Hutchinson-type) estimators for symmetric operators given as matvecs.

* :func:`hutchinson_samples` — per-probe samples z_iᵀAz_i and ‖Az_i‖² (scaled, underflow-free);
  :func:`ratio_estimate` turns them into Tr A/‖A‖_F (the ICML paper's positive curvature, Eq. 2)
  with a delta-method standard error (Hutchinson 1989).
* :func:`trace_estimate`, :func:`frobenius_estimate` — Hutchinson and Hutch++ (Meyer, Musco, Musco
  & Woodruff 2021) with standard errors.

Operators, dtypes and probes are those of :mod:`gzone.lanczos` (``matvec(v, *params)`` or an
:class:`gzone.lanczos.Operator`; the working dtype is inferred from the operator unless given).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gzone.lanczos import (
    Matvec,
    Operator,
    apply,
    apply_block,
    check_positive,
    probe_vector,
    unpack,
    working_dtype,
)
from gzone.precision import strict, strictly

Array = jax.Array
TRACE_METHODS = ("hutchinson", "hutch++")




def probes(key: Array, num: int, dim: int, dtype: Any, kind: str = "rademacher") -> Array:
    """(num, dim) block of :func:`gzone.lanczos.probe_vector` vectors 0 … num − 1."""
    return jnp.stack([probe_vector(key, i, dim, jnp.dtype(dtype), kind) for i in range(num)])


@jax.jit
@strictly
def _scaled_forms(z: Array, az: Array) -> tuple[Array, Array, Array]:
    """(s, zᵀu, ‖u‖²) with u = A z / s and s = max|A z|: t = s·zᵀu and f = s²·‖u‖² never underflow."""
    scale = jnp.max(jnp.abs(az))
    unit = az / jnp.where(scale > 0, scale, 1)
    return scale, z @ unit, unit @ unit


def hutchinson_samples(
    matvec: Matvec | Operator, dim: int, *params: Any, key: Array, num_probes: int,
    dtype: Any = None,
) -> tuple[Array, Array, Array]:
    """Per Rademacher probe z_i = :func:`probe` (key, i) (E zzᵀ = I): the scales s_i = max|Az_i|
    and the scaled samples t_i/s_i = z_iᵀAz_i/s_i (E t = tr A) and f_i/s_i² = ‖Az_i‖²/s_i²
    (E f = ‖A‖_F²), each (num_probes,); one product A z_i per probe (Hutchinson 1989). Scaling
    keeps tiny operators (a G-term of 1e-28) from underflowing in t and f."""
    matvec, params = unpack(matvec, params)
    dim, num_probes = check_positive("dim", dim), check_positive("num_probes", num_probes)
    dtype = working_dtype(matvec, dim, params, dtype)
    out = []
    for i in range(num_probes):
        z = probe_vector(key, i, dim, dtype)
        out.append(_scaled_forms(z, apply(matvec, z, *params).astype(dtype)))
    return tuple(jnp.stack(parts) for parts in zip(*out))


@jax.jit
@strictly
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
    matvec, params = unpack(matvec, params)
    dim, num_probes = check_positive("dim", dim), check_positive("num_probes", num_probes)
    if method not in TRACE_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(TRACE_METHODS)}")
    dtype = working_dtype(matvec, dim, params, dtype)

    def block(z: Array) -> Array:
        return apply_block(matvec, z, *params, batch_size=batch_size).astype(dtype)

    def estimate(z: Array, offset: Array | float = 0.0) -> tuple[Array, Array]:
        samples = sample(z, block(z))
        return offset + samples.mean(), samples.std(ddof=1) / math.sqrt(samples.shape[0])

    with strict():  # the products A z run strictly in their own programs; these are the rest
        return _estimate_strictly(method, num_probes, key, dim, dtype, block, estimate, sample)


def _estimate_strictly(method: str, num_probes: int, key: Array, dim: int, dtype: Any,
                       block: Callable, estimate: Callable, sample: Callable) -> tuple[Array, Array]:
    """Hutchinson or Hutch++ from the driver's ``block`` (A Z), ``estimate`` and ``sample``."""
    if method == "hutchinson":
        if num_probes < 2:
            raise ValueError("a standard error needs num_probes >= 2")
        return estimate(probes(key, num_probes, dim, dtype))
    if num_probes < 4:
        raise ValueError(f"hutch++ needs num_probes >= 4, got {num_probes}")
    num_sketch = num_probes // 3  # matvecs: num_sketch (A S) + num_sketch (A Q) + the rest
    key_sketch, key_hutch = jax.random.split(key)
    sketch = block(probes(key_sketch, num_sketch, dim, dtype))
    q = jnp.linalg.qr(sketch.T)[0].T  # (num_sketch, dim), orthonormal rows
    exact = sample(q, block(q)).sum()
    g = probes(key_hutch, num_probes - 2 * num_sketch, dim, dtype)
    return estimate(g - (g @ q.T) @ q, exact)  # Hutchinson on deflated probes (I - Q Qᵀ) g


def trace_estimate(
    matvec: Matvec | Operator,
    dim: int,
    *params: Any,
    key: Array,
    num_probes: int,
    method: str = "hutchinson",
    dtype: Any = None,
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
        matvec, dim, params, key, num_probes, method, dtype, batch_size,
        lambda z, az: (z * az).sum(1),
    )


def frobenius_estimate(
    matvec: Matvec | Operator,
    dim: int,
    *params: Any,
    key: Array,
    num_probes: int,
    method: str = "hutchinson",
    dtype: Any = None,
    batch_size: int | None = None,
) -> tuple[Array, Array]:
    """Randomised estimate of ``||A||_F² = E||A z||²`` (Rademacher z); ``(estimate, std. error)``.

    ``"hutch++"`` splits ``||A||_F² = ||A Q||_F² + ||A (I − QQᵀ)||_F²`` with Q = qr(A S), computing
    the first term exactly and the second by Hutchinson on deflated probes.
    """
    return _randomised_estimate(
        matvec, dim, params, key, num_probes, method, dtype, batch_size,
        lambda z, az: (az * az).sum(1),
    )
