"""Objective (Eq. 1), metrics (Eq. 2) and random subspaces (Fort & Scherlis Sec. 2.1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gzone import metrics, objective, subspace


def test_cross_entropy_matches_definition_and_temperature():
    z = jax.random.normal(jax.random.key(0), (6, 5), jnp.float64)
    y = jnp.array([0, 1, 2, 3, 4, 0])
    for t in (0.3, 1.0, 4.0):
        p = np.exp(np.asarray(z) / t) / np.exp(np.asarray(z) / t).sum(1, keepdims=True)
        np.testing.assert_allclose(objective.probs(z, t), p, rtol=1e-12)
        np.testing.assert_allclose(objective.cross_entropy(z, y, t), -np.log(p[np.arange(6), y]).mean(), rtol=1e-12)
    w = jnp.arange(6.0) / 15
    np.testing.assert_allclose(
        objective.cross_entropy(z, y, 1.0, w), jnp.sum(w * -objective.log_probs(z)[jnp.arange(6), y]), rtol=1e-12
    )


def test_logit_derivatives_match_autodiff():
    z = jax.random.normal(jax.random.key(1), (3, 4), jnp.float64)
    y = jnp.array([2, 0, 3])
    t = 0.6
    for i in range(3):
        def loss(zi, i=i):
            return objective.cross_entropy(zi[None], y[i : i + 1], t)
        np.testing.assert_allclose(objective.logit_gradient(z, y, t)[i], jax.grad(loss)(z[i]), rtol=1e-12)
        np.testing.assert_allclose(objective.logit_hessian(z, t)[i], jax.hessian(loss)(z[i]), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_loss_is_finite_for_huge_logits(dtype):
    """LeNet-5 at α = 1e3 has logits ~1e15: log-sum-exp keeps loss and probabilities finite."""
    z = jnp.array([[1e15, -3e14, 2e14], [5.0, 5.0 + 1e-3, -1e15]], dtype)
    y = jnp.array([1, 2])
    loss = objective.cross_entropy(z, y)
    assert jnp.isfinite(loss) and loss > 1e14
    assert jnp.all(jnp.isfinite(objective.probs(z))) and jnp.all(jnp.isfinite(objective.logit_hessian(z)))


def test_overflowed_logits_are_flagged_not_hidden():
    z = jnp.array([[jnp.inf, 0.0], [1.0, 2.0]], jnp.float32)
    assert objective.nonfinite_flags(loss=objective.cross_entropy(z, jnp.array([1, 0]))) == ["loss"]
    record = metrics.spectrum_summary(jnp.array([[jnp.nan, 0.0], [0.0, 1.0]]))
    assert "nonfinite_matrix" in record["flags"]


def test_centred_form_equals_textbook_form_when_well_conditioned():
    rng = np.random.default_rng(0)
    p = jax.nn.softmax(jnp.asarray(rng.standard_normal((7, 5))), axis=-1)
    u, v = (jnp.asarray(rng.standard_normal((7, 5))) for _ in range(2))
    textbook = jnp.einsum("nk,nkl,nl->n", u, jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :], v)
    np.testing.assert_allclose(objective.centred_quadratic_form(p, u, v, 0.5), textbook / 0.25, rtol=1e-10)


def test_metrics_on_known_spectra():
    eigs = jnp.array([3.0, 4.0, 0.0, -1.0])
    matrix = jnp.diag(eigs)
    np.testing.assert_allclose(metrics.positive_curvature(metrics.eigenvalues(matrix)), 6 / np.sqrt(26))
    assert float(metrics.local_convexity(eigs)) == 0.5
    assert float(metrics.spectral_norm(jnp.array([1.0, -5.0]))) == 5.0
    assert float(metrics.top_eigenvalue(jnp.array([1.0, -5.0]))) == 1.0  # the authors' "spectral norm"
    record = metrics.spectrum_summary(jnp.zeros((3, 3)))
    assert record["positive_curvature"] is None and "zero_matrix" in record["flags"]
    asym = jnp.array([[1.0, 2.0], [0.0, 1.0]])  # eigh must see the symmetrised matrix
    np.testing.assert_allclose(metrics.eigenvalues(asym), [0.0, 2.0], atol=1e-12)


def test_positive_curvature_bounds_for_psd_matrices():
    """For PSD A of rank r: 1 ≤ Tr/‖·‖_F ≤ √r (ICML paper, Sec. 4)."""
    rng = np.random.default_rng(1)
    for rank in (1, 3, 10):
        a = rng.standard_normal((10, rank))
        pc = float(metrics.positive_curvature(metrics.eigenvalues(jnp.asarray(a @ a.T))))
        assert 1 - 1e-9 <= pc <= np.sqrt(rank) + 1e-9
    np.testing.assert_allclose(metrics.positive_curvature(jnp.ones(9)), 3.0)


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.float64, 1e-12)])
def test_orthonormal_basis_is_exactly_orthonormal(dtype, tol):
    basis = subspace.orthonormal_basis(jax.random.key(0), 5000, 40, dtype)
    assert basis.shape == (5000, 40) and basis.dtype == dtype
    np.testing.assert_allclose(basis.T @ basis, np.eye(40), atol=tol)
    other = subspace.orthonormal_basis(jax.random.key(1), 5000, 40, dtype)
    assert not np.allclose(basis, other)
    np.testing.assert_array_equal(basis, subspace.orthonormal_basis(jax.random.key(0), 5000, 40, dtype))


def test_sparse_basis_is_near_orthonormal_at_density_one_over_sqrt_p():
    num_params, dim = 266_200, 50
    basis = np.asarray(subspace.sparse_basis(jax.random.key(0), num_params, dim))  # checked in NumPy
    np.testing.assert_allclose(np.linalg.norm(basis.astype(np.float64), axis=0), 1.0, rtol=1e-6)
    density = float(np.mean(basis != 0))
    assert abs(density - num_params**-0.5) < 0.1 * num_params**-0.5
    for column in basis[:, :5].T:  # ±1 entries, normalised: ±1/√(count)
        nonzero = column[column != 0]
        np.testing.assert_allclose(np.abs(nonzero), nonzero.size**-0.5, rtol=1e-6)
        assert 0.2 < np.mean(nonzero > 0) < 0.8
    gram = basis.T @ basis
    off_diagonal = np.abs(gram - np.diag(np.diag(gram)))
    assert 0 < float(off_diagonal.max()) < 0.02  # near- but not exactly orthogonal


def test_basis_errors_and_subspace_params():
    with pytest.raises(ValueError, match="d=11"):
        subspace.random_basis(jax.random.key(0), 10, 11)
    with pytest.raises(ValueError, match="unknown basis"):
        subspace.random_basis(jax.random.key(0), 10, 2, kind="dense")
    params = {"a": jnp.ones((2, 3)), "b": jnp.zeros(4)}
    basis = subspace.orthonormal_basis(jax.random.key(0), 10, 3, jnp.float32)
    theta_hat = jnp.array([1.0, -2.0, 0.5])
    moved = subspace.subspace_params(params, basis, theta_hat)
    flat = jnp.concatenate([moved["a"].ravel(), moved["b"]])
    np.testing.assert_allclose(flat, jnp.concatenate([jnp.ones(6), jnp.zeros(4)]) + basis @ theta_hat, rtol=1e-6)
