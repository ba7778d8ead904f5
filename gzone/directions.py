"""Curvature along random directions and on random d-planes (Fort & Scherlis, Sec. 2.4), exactly.

For a symmetric H (D × D) with eigenvalues λ_i, s1 = Tr H = Σλ_i and s2 = ‖H‖_F² = Σλ_i²:

* **Random directions.** For v uniform on the unit sphere S^(D−1) the curvature κ = vᵀHv has

      E κ = s1 / D                                   (the mean principal curvature)
      Var κ = 2/(D + 2) · Var_i λ_i,   Var_i λ_i = s2/D − (s1/D)²  (population variance)

  *exactly* (from E u_i⁴ = 3/(D(D+2)) and E u_i²u_j² = 1/(D(D+2)) for u uniform on the sphere);
  the paper's Wick-theorem version (v Gaussian, ~2/D) is its large-D form. A small excess of
  positive eigenvalues thus goes with an overwhelming majority of positive directions: with κ
  close to Gaussian for large D, P(κ > 0) ≈ Φ(E κ / √Var κ) (:func:`positive_direction_fraction`).
* **Random d-planes.** For R (D × d) with Haar-orthonormal columns and H_d = RᵀHR:

      E Tr H_d = d s1 / D
      E ‖H_d‖_F² = d (2 s2 + s1²) / (D (D + 2)) + d (d − 1) (D s2 − s1²) / (D (D − 1) (D + 2))

  (diagonal entries are κ's of single directions; an off-diagonal (r_aᵀHr_b)² of an orthonormal
  pair has mean (D s2 − s1²)/(D (D−1)(D+2))). With ρ = s1/√s2 = Tr H/‖H‖_F and D ≫ d, ρ²:

      ρ_d := E Tr H_d / √(E ‖H_d‖_F²) ≈ ρ · √(d / (d + 1 + ρ²))

  so ρ_d → ρ once d ≫ 1 + ρ² — the paper's "d ≫ (Tr H/‖H‖)²" made exact
  (:func:`plane_ratio`). The mean eigenvalue of H_d is s1/D for every d while their spread
  shrinks like √d (Var of H_d's eigenvalues ≈ (d + 1) s2/D² − …), hence the larger excess of
  positive eigenvalues on smaller planes (Fig. 3a).

Everything here takes (s1, s2, D), so it applies both to an explicit spectrum (tests) and to the
full-space Hutchinson estimates of Tr H and ‖H‖_F² (:mod:`gzone.hutchinson`) of a network.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class DirectionMoments(NamedTuple):
    """Mean and variance of the curvature vᵀHv along a uniformly random unit direction v."""

    mean: float
    variance: float


def _check_dim(dim: int, name: str = "dim") -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {dim!r}")
    return int(dim)


def direction_moments(trace: float, frobenius_sq: float, dim: int) -> DirectionMoments:
    """Exact E and Var of vᵀHv for v uniform on S^(D−1), from s1 = Tr H, s2 = ‖H‖_F², D."""
    dim = _check_dim(dim)
    mean = trace / dim
    principal_variance = frobenius_sq / dim - mean**2
    return DirectionMoments(float(mean), float(2.0 / (dim + 2) * principal_variance))


def spectrum_moments(eigs: Any) -> DirectionMoments:
    """:func:`direction_moments` of an explicit spectrum λ (D,)."""
    eigs = np.asarray(eigs, np.float64)
    return direction_moments(float(eigs.sum()), float((eigs**2).sum()), eigs.size)


def principal_variance(trace: float, frobenius_sq: float, dim: int) -> float:
    """Population variance of the principal curvatures (eigenvalues): s2/D − (s1/D)²."""
    dim = _check_dim(dim)
    return float(frobenius_sq / dim - (trace / dim) ** 2)


def positive_direction_fraction(moments: DirectionMoments) -> float:
    """P(vᵀHv > 0) in the Gaussian approximation Φ(E κ / √Var κ) (large D)."""
    import scipy.stats  # here, not at the top: scipy takes ~1 s to import
    if moments.variance <= 0:
        return float(moments.mean > 0)
    return float(scipy.stats.norm.cdf(moments.mean / math.sqrt(moments.variance)))


def plane_moments(trace: float, frobenius_sq: float, num_params: int, dim: int) -> tuple[float, float]:
    """(E Tr H_d, E ‖H_d‖_F²) for H_d = RᵀHR on a Haar-random orthonormal d-plane (module doc)."""
    big, dim = _check_dim(num_params, "num_params"), _check_dim(dim)
    if dim > big:
        raise ValueError(f"dim={dim} exceeds num_params={big}; choose dim <= num_params")
    s1, s2 = float(trace), float(frobenius_sq)
    mean_trace = dim * s1 / big
    diagonal = dim * (2 * s2 + s1**2) / (big * (big + 2))
    off = 0.0 if big == 1 else dim * (dim - 1) * (big * s2 - s1**2) / (big * (big - 1) * (big + 2))
    return mean_trace, diagonal + off


def plane_ratio(trace: float, frobenius_sq: float, num_params: int, dim: int) -> float:
    """ρ_d = E Tr H_d / √(E ‖H_d‖_F²) on a random orthonormal d-plane (exact moments)."""
    mean_trace, mean_frob = plane_moments(trace, frobenius_sq, num_params, dim)
    return float(mean_trace / math.sqrt(mean_frob)) if mean_frob > 0 else float("nan")


def plane_ratio_limit(ratio: float, dim: int) -> float:
    """The large-D form ρ √(d / (d + 1 + ρ²)) of :func:`plane_ratio` (ρ = Tr H/‖H‖_F)."""
    dim = _check_dim(dim)
    return float(ratio * math.sqrt(dim / (dim + 1 + ratio**2)))


def unit_directions(key: jax.Array, num: int, dim: int, dtype: Any = jnp.float32) -> jax.Array:
    """(num, dim) directions uniform on the unit sphere (normalised Gaussians)."""
    _check_dim(num, "num"), _check_dim(dim)
    g = jax.random.normal(key, (num, dim), jnp.dtype(dtype))
    return g / jnp.linalg.norm(g, axis=1, keepdims=True)


def direction_curvatures(hvp: Any, directions: jax.Array) -> np.ndarray:
    """vᵀHv for each row v of ``directions`` (num, D), one product ``hvp(v)`` each."""
    return np.asarray([float(v @ hvp(v)) for v in directions], np.float64)
