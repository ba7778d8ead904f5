"""The loss as a function of the configuration-space radius (Fort & Scherlis, Sec. 2.2, 2.5, 2.6).

* **Radius.** r = ‖θ‖ over all parameters. A Gaussian initialisation puts each weight matrix on
  its own thin shell of radius σ_ℓ √n_ℓ (Sec. 2.2); the *Xavier radius* r_X is ‖θ0‖ of a Xavier
  draw, and a point "at radius r" is θ0 · r/‖θ0‖ — every layer moved by the same factor along its
  own shell (the paper's per-layer metric), biases (initialised at 0) staying at 0.
* **Mean loss over radius (Sec. 2.5).** For a degree-L homogeneous network f(αθ) = α^L f(θ), the
  cross-entropy at large α is α^L · mean(z_max − z_y) + o(1): a power law in r with exponent L
  exactly in the limit, and log K (flat) at small r. :func:`power_law_exponent` fits it.
* **Stokes (Eq. 4).** By the divergence theorem on the ball of radius r in D dimensions, the mean
  Laplacian over the sphere S_r equals

      ⟨∇²ℓ⟩_r = d²⟨ℓ⟩_r/dr² + (D − 1)/r · d⟨ℓ⟩_r/dr,

  where ⟨·⟩_r averages over S_r (uniformly). Only the radial growth of the mean loss can make
  the mean Laplacian non-zero: the angular hills and valleys average out. With a metric
  θ = M φ (per-layer scales, the coordinates in which Xavier draws are isotropic) the identity
  holds for ℓ(Mφ), whose Laplacian is Tr(M H M). :func:`stokes_laplacian` is its right-hand
  side by finite differences of ⟨ℓ⟩ over a grid of radii.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gzone import models


def radius(params: Any) -> float:
    """The configuration-space radius ‖θ‖ (all parameters, biases included)."""
    return float(jnp.linalg.norm(ravel_pytree(params)[0]))


def at_radius(params: Any, target: float) -> Any:
    """θ · r/‖θ‖: ``params`` moved to radius ``target`` along its own ray (every layer by the same
    factor, so each weight matrix stays on its own scaled shell; zero biases stay zero)."""
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"radius must be a finite positive number, got {target!r}")
    current = radius(params)
    if current == 0:
        raise ValueError("params are all zero: a zero vector has no direction to scale along")
    return models.scale(params, float(target) / current)


def _grid(radii: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    radii, values = np.asarray(radii, np.float64), np.asarray(values, np.float64)
    if radii.ndim != 1 or radii.shape != values.shape or radii.size < 3:
        raise ValueError(f"radii and values must be 1-D of equal length >= 3, got shapes "
                         f"{radii.shape} and {values.shape}")
    if np.any(np.diff(radii) <= 0) or radii[0] <= 0:
        raise ValueError("radii must be positive and strictly increasing")
    return radii, values


def stokes_laplacian(radii: Any, mean_values: Any, dim: int) -> np.ndarray:
    """Right-hand side of Eq. (4), d²⟨ℓ⟩/dr² + (D − 1)/r · d⟨ℓ⟩/dr, from ⟨ℓ⟩ on a grid of radii
    (second-order finite differences on the possibly non-uniform grid, ``np.gradient``). The two
    end points, where the second derivative is only one-sided, are NaN (not estimated)."""
    radii, values = _grid(radii, mean_values)
    if isinstance(dim, bool) or int(dim) != dim or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    first = np.gradient(values, radii, edge_order=2)
    second = np.gradient(first, radii, edge_order=2)
    out = second + (dim - 1) / radii * first
    out[[0, -1]] = np.nan
    return out


class PowerLaw(NamedTuple):
    """ℓ ≈ c · r^exponent fitted on r ≥ r_min (least squares in log-log), with its stderr."""

    exponent: float
    stderr: float
    prefactor: float
    r_min: float
    num_points: int


def power_law_exponent(radii: Any, values: Any, *, r_min: float) -> PowerLaw:
    """Fit log ℓ = log c + k log r on the points with r ≥ ``r_min`` (Sec. 2.5: k ≈ L above the
    critical radius); needs three or more such points with ℓ > 0."""
    import scipy.stats  # here, not at the top: scipy takes ~1 s to import
    radii, values = _grid(radii, values)
    keep = (radii >= r_min) & (values > 0) & np.isfinite(values)
    if keep.sum() < 3:
        raise ValueError(f"need at least 3 points with radius >= r_min={r_min:g} and a positive "
                         f"finite value, got {int(keep.sum())}; lower r_min")
    fit = scipy.stats.linregress(np.log(radii[keep]), np.log(values[keep]))
    return PowerLaw(float(fit.slope), float(fit.stderr), float(np.exp(fit.intercept)),
                    float(r_min), int(keep.sum()))


def critical_radius(radii: Any, mean_loss: Any, flat_value: float, *, rise: float = 0.1) -> float:
    """The smallest radius at which ⟨ℓ⟩ exceeds ``flat_value`` (e.g. log K) by ``rise`` × it;
    NaN when it never does on the grid."""
    radii, values = _grid(radii, mean_loss)
    above = np.nonzero(values > flat_value * (1 + rise))[0]
    return float(radii[above[0]]) if above.size else float("nan")
