"""Fort & Scherlis Sec. 2.4–2.6 as property tests: random-direction and random-plane statistics
against Monte Carlo on matrices with known spectra, the loss-radius exponent where it is exact,
and Stokes' theorem (Eq. 4) on a function whose Laplacian is known."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FAST_RUN

from gzone import directions, models, radial, subspace
from gzone.objective import cross_entropy


def _matrix(rng: np.random.Generator, eigs: np.ndarray) -> np.ndarray:
    q = np.linalg.qr(rng.normal(size=(len(eigs), len(eigs))))[0]
    return (q * eigs) @ q.T


def test_direction_moments_match_monte_carlo_on_a_known_spectrum():
    rng = np.random.default_rng(0)
    dim = 30
    eigs = rng.normal(0.4, 1.0, dim)
    h = _matrix(rng, eigs)
    v = rng.normal(size=(200_000, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    kappa = ((v @ h) * v).sum(axis=1)
    predicted = directions.spectrum_moments(eigs)
    assert predicted.mean == pytest.approx(eigs.mean(), rel=1e-12)
    assert abs(kappa.mean() - predicted.mean) < 5 * kappa.std() / math.sqrt(len(kappa))
    # the exact factor 2/(D+2) (D = 30: 1/16), not the large-D 2/D (1/15): a 6 % difference
    assert kappa.var() == pytest.approx(predicted.variance, rel=0.015)
    assert predicted.variance == pytest.approx(2 / (dim + 2) * eigs.var(), rel=1e-12)
    assert kappa.var() != pytest.approx(2 / dim * eigs.var(), rel=0.03)


def test_positive_direction_fraction_far_exceeds_positive_eigenvalues():
    """Sec. 2.4: a slim majority of positive eigenvalues goes with an overwhelming majority of
    positive directions; the Gaussian prediction Φ(mean/sd) matches Monte Carlo at large D."""
    rng = np.random.default_rng(1)
    dim = 2000
    eigs = rng.normal(0.08, 1.0, dim)
    h = _matrix(rng, eigs)
    v = rng.normal(size=(4000, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    kappa = ((v @ h) * v).sum(axis=1)
    predicted = directions.positive_direction_fraction(directions.spectrum_moments(eigs))
    assert np.mean(eigs > 0) < 0.58
    assert predicted > 0.9
    assert np.mean(kappa > 0) == pytest.approx(predicted, abs=0.02)


def test_plane_moments_match_haar_monte_carlo():
    rng = np.random.default_rng(2)
    big, dim = 40, 7
    eigs = rng.normal(0.3, 1.0, big)
    h = jnp.asarray(_matrix(rng, eigs))
    keys = jax.random.split(jax.random.key(0), 20000)
    bases = jax.vmap(lambda k: subspace._orthonormal_basis(k, big, dim, jnp.float32))(keys)
    planes = np.asarray(jnp.einsum("npi,pq,nqj->nij", bases, h.astype(jnp.float32), bases), np.float64)
    traces = np.trace(planes, axis1=1, axis2=2)
    frobs = (planes**2).sum(axis=(1, 2))
    mean_trace, mean_frob = directions.plane_moments(eigs.sum(), (eigs**2).sum(), big, dim)
    assert mean_trace == pytest.approx(dim * eigs.sum() / big, rel=1e-12)
    assert abs(traces.mean() - mean_trace) < 5 * traces.std() / math.sqrt(len(traces))
    assert abs(frobs.mean() - mean_frob) < 5 * frobs.std() / math.sqrt(len(frobs))


def test_plane_ratio_tends_to_the_full_space_ratio_for_large_d():
    rng = np.random.default_rng(3)
    big = 100_000
    eigs = rng.normal(0.2, 1.0, big)
    s1, s2 = eigs.sum(), (eigs**2).sum()
    rho = s1 / math.sqrt(s2)
    assert rho**2 > 100  # so d = 10 is far from the limit and d = 10^4 close to it
    for dim in (1, 10, 100, 1000, 10_000):
        exact = directions.plane_ratio(s1, s2, big, dim)
        assert exact == pytest.approx(directions.plane_ratio_limit(rho, dim), rel=0.02)
    assert directions.plane_ratio(s1, s2, big, 10) < 0.4 * rho
    ratios = [directions.plane_ratio(s1, s2, big, d) for d in (10, 100, 1000, 10_000, 50_000)]
    assert np.all(np.diff(ratios) > 0) and ratios[-1] < rho and ratios[-1] > 0.9 * rho


def test_direction_statistics_reject_bad_dimensions():
    with pytest.raises(ValueError, match="dim must be an integer >= 1"):
        directions.direction_moments(1.0, 1.0, 0)
    with pytest.raises(ValueError, match="dim=5 exceeds num_params=4"):
        directions.plane_moments(1.0, 1.0, 4, 5)


def test_stokes_right_hand_side_recovers_a_known_laplacian():
    """f(θ) = Σ a_i θ_i² + c‖θ‖⁴: ⟨f⟩_ρ = ρ² Σa/D + c ρ⁴ and ∇²f = 2 Σa + 4 (D + 2) c ‖θ‖²."""
    dim, c = 50, 0.3
    a = np.linspace(-1.0, 2.0, dim)
    radii = np.geomspace(0.5, 3.0, 41)
    mean_f = radii**2 * a.sum() / dim + c * radii**4
    exact = 2 * a.sum() + 4 * (dim + 2) * c * radii**2
    rhs = radial.stokes_laplacian(radii, mean_f, dim)
    assert np.isnan(rhs[[0, -1]]).all()  # one-sided second derivatives are not estimated
    np.testing.assert_allclose(rhs[1:-1], exact[1:-1], rtol=2e-3)


def test_stokes_holds_for_sphere_averages_estimated_numerically():
    """Both sides estimated as the fort study does: Monte Carlo over fixed directions on the
    sphere, Hutchinson for ∇²f = Tr H (jax.hessian-vector products), finite differences of ⟨f⟩."""
    dim, c = 20, 0.2
    a = jnp.linspace(-1.0, 2.0, dim)

    def f(theta):
        return jnp.sum(a * theta**2) + c * jnp.sum(theta**2) ** 2 + jnp.sin(theta[0] * theta[1])

    units = directions.unit_directions(jax.random.key(0), 4000, dim, jnp.float64
                                       if jax.config.jax_enable_x64 else jnp.float32)
    probes = jnp.sign(jax.random.normal(jax.random.key(1), (4000, dim)))
    hvp = jax.vmap(lambda x, v: jax.jvp(jax.grad(f), (x,), (v,))[1])
    radii = np.geomspace(0.5, 2.0, 9)
    mean_f, laplacian, stderr = [], [], []
    for rho in radii:
        points = rho * units
        mean_f.append(float(jnp.mean(jax.vmap(f)(points))))
        lap = np.asarray(jnp.sum(probes * hvp(points, probes), axis=1), np.float64)
        laplacian.append(lap.mean())
        stderr.append(lap.std() / math.sqrt(len(lap)))
    rhs = radial.stokes_laplacian(radii, mean_f, dim)
    # the right side's Monte Carlo error (⟨f⟩ over 4,000 directions, amplified by (D − 1)/ρ)
    # dominates: the interior agrees to 2 %
    for lhs, right, se in zip(laplacian[1:-1], rhs[1:-1], stderr[1:-1]):
        assert abs(lhs - right) < 5 * se + 0.02 * abs(lhs)
    assert rhs[4] != pytest.approx(2 * float(a.sum()), rel=0.5)  # not the flat-radial answer


def test_loss_grows_with_exponent_L_at_large_radius_for_a_homogeneous_network():
    """Sec. 2.5: for f(αθ) = α^L f(θ) the cross-entropy is α^L mean(z_max − z_y) + o(1)."""
    model = models.make_model("mlp", 5, widths=(16, 16))
    x = jax.random.normal(jax.random.key(0), (200, 12))
    y = jax.random.randint(jax.random.key(1), (200,), 0, 5)
    params = models.init(model, jax.random.key(2), (12,), "xavier")
    r0 = radial.radius(params)
    radii = np.geomspace(30, 300, 6) * r0
    losses = [float(cross_entropy(model.apply(radial.at_radius(params, r), x), y)) for r in radii]
    fit = radial.power_law_exponent(radii, losses, r_min=radii[0])
    assert fit.exponent == pytest.approx(model.homogeneity_degree, abs=0.02)
    small = [float(cross_entropy(model.apply(radial.at_radius(params, r * 1e-3 * r0), x), y))
             for r in (1.0, 2.0)]
    np.testing.assert_allclose(small, math.log(5), rtol=1e-3)  # flat (log K) at small radii
    assert radial.critical_radius(np.geomspace(1e-3, 100, 30) * r0, [
        float(cross_entropy(model.apply(radial.at_radius(params, r), x), y))
        for r in np.geomspace(1e-3, 100, 30) * r0], math.log(5)) > 1e-3 * r0


def test_radial_helpers_reject_bad_input():
    with pytest.raises(ValueError, match="strictly increasing"):
        radial.stokes_laplacian([1.0, 0.5, 2.0], [1.0, 2.0, 3.0], 3)
    with pytest.raises(ValueError, match="lower r_min"):
        radial.power_law_exponent([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], r_min=3.5)
    with pytest.raises(ValueError, match="radius must be a finite positive number"):
        radial.at_radius({"w": jnp.ones(3)}, -1.0)
    with pytest.raises(ValueError, match="no direction"):
        radial.at_radius({"w": jnp.zeros(3)}, 1.0)


def test_stokes_holds_for_a_small_network_with_biases():
    """Eq. (4) on a tanh MLP with biases (not homogeneous): the exact Laplacian Tr H (jax.hessian)
    averaged over fixed random directions on each sphere against d²⟨ℓ⟩/dρ² + (D − 1)/ρ d⟨ℓ⟩/dρ."""
    model = models.make_model("mlp", 3, widths=(6,), activation="tanh", use_bias=True)
    x = jax.random.normal(jax.random.key(0), (40, 8), jnp.float64)
    y = jax.random.randint(jax.random.key(1), (40,), 0, 3)
    params = models.init(model, jax.random.key(2), (8,), "xavier", jnp.float64)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    dim = flat.size

    def loss(theta):
        return cross_entropy(model.apply(unravel(theta), x), y)

    units = directions.unit_directions(jax.random.key(3), 250, dim, jnp.float64)
    units = jnp.concatenate([units, -units])  # antithetic: the gradient term cancels exactly
    laplacian = jax.jit(jax.vmap(lambda t: jnp.trace(jax.hessian(loss)(t))),
                        compiler_options=FAST_RUN)
    losses = jax.jit(jax.vmap(loss), compiler_options=FAST_RUN)
    radii = np.geomspace(1.0, 4.0, 7)
    mean_loss, mean_lap, stderr = [], [], []
    for rho in radii:
        points = rho * units
        mean_loss.append(float(jnp.mean(losses(points))))
        lap = np.asarray(laplacian(points))
        mean_lap.append(lap.mean())
        stderr.append(lap.std() / math.sqrt(len(lap)))
    rhs = radial.stokes_laplacian(radii, mean_loss, dim)
    for lhs, right, se in zip(mean_lap[1:-1], rhs[1:-1], stderr[1:-1]):
        assert abs(lhs - right) < 5 * se + 0.05 * abs(lhs)
    assert max(mean_lap) > 10 * max(stderr)  # a non-trivial mean Laplacian, not noise
