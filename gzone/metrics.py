"""Curvature metrics of symmetric matrices (ICML paper Eq. 2; Fort & Scherlis Sec. 2.3–2.4).

All spectra come from ``jnp.linalg.eigh`` of the symmetrised matrix (A + Aᵀ)/2.

Note on "spectral norm": the papers' Figure 2 plots ‖·‖₂ = max |λ|. The authors' code reports the
*top eigenvalue* max λ under that name (their power iteration with deflation returns the largest
eigenvalues). For the G-term (PSD) the two agree; for the indefinite H-term they can differ, so
gzone reports both: :func:`spectral_norm` and :func:`top_eigenvalue`.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def eigenvalues(matrix: jax.Array) -> jax.Array:
    """Eigenvalues (ascending) of the symmetrised matrix."""
    return jnp.linalg.eigh((matrix + matrix.T) / 2)[0]


def positive_curvature(eigs: jax.Array) -> jax.Array:
    """Tr/‖·‖_F = Σλ / √(Σλ²) (Eq. 2); NaN for the zero matrix (0/0, flagged by callers).

    Computed on λ / max|λ| (the ratio is scale-invariant), so tiny non-zero spectra such as a
    G-term of 1e-28 do not underflow in Σλ².
    """
    largest = jnp.max(jnp.abs(eigs))
    unit = eigs / jnp.where(largest > 0, largest, 1)
    return jnp.where(largest > 0, jnp.sum(unit) / jnp.sqrt(jnp.sum(unit**2)), jnp.nan)


def local_convexity(eigs: jax.Array) -> jax.Array:
    """Fraction of strictly positive eigenvalues (Fort & Scherlis)."""
    return jnp.mean((eigs > 0).astype(eigs.dtype))


def spectral_norm(eigs: jax.Array) -> jax.Array:
    """‖·‖₂ = max |λ| (the quantity of Eq. 6 and Figure 2, bottom)."""
    return jnp.max(jnp.abs(eigs))


def top_eigenvalue(eigs: jax.Array) -> jax.Array:
    """max λ (what the authors' code reports as "spectral norm")."""
    return jnp.max(eigs)


def spectrum_summary(matrix: jax.Array) -> dict[str, Any]:
    """Host-side record of one matrix: the metrics above, its eigenvalues, and ``flags`` naming
    anything non-finite or undefined (never written silently as a number)."""
    eigs = eigenvalues(matrix)
    flags = []
    if not bool(jnp.all(jnp.isfinite(matrix))):
        flags.append("nonfinite_matrix")
    record = {
        "positive_curvature": float(positive_curvature(eigs)),
        "local_convexity": float(local_convexity(eigs)),
        "spectral_norm": float(spectral_norm(eigs)),
        "top_eigenvalue": float(top_eigenvalue(eigs)),
    }
    eigs = np.asarray(jax.device_get(eigs), dtype=np.float64)
    if not np.any(eigs) and "nonfinite_matrix" not in flags:
        flags.append("zero_matrix")
    for name, value in record.items():
        if not math.isfinite(value):
            record[name] = None
            flags.append(f"undefined_{name}")
    record["eigenvalues"] = [v if math.isfinite(v) else None for v in eigs.tolist()]
    record["flags"] = sorted(set(flags))
    return record


def cosine_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
    """aᵀb / (‖a‖‖b‖) of flat vectors."""
    return jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))


def softmax_entropy(p: jax.Array) -> jax.Array:
    """Per-sample entropy −Σ_k p_k log p_k (natural log, 0 log 0 = 0): (K,) → (), (N, K) → (N,)."""
    return jnp.sum(jax.scipy.special.entr(jnp.asarray(p)), axis=-1)
