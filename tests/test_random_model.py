"""Property tests of gzone.random_model against the paper (Eq. 7-11, Appendices B and C)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gzone import random_model as rm

jax.config.update("jax_enable_x64", True)

K = 10


def _dirichlet(seed, concentration, num_classes=K, n=None):
    """Softmax-like outputs: (K,) if n is None else (n, K), float64."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(num_classes, concentration), n)


def _curvature(matrix):
    """Tr/||.||_F of a symmetric matrix from numpy eigenvalues (independent reference, Eq. 2)."""
    eig = np.linalg.eigvalsh(np.asarray(matrix, np.float64))
    return eig.sum() / np.sqrt(np.sum(eig**2))


def _dense_hessian(probs):
    p = np.atleast_2d(np.asarray(probs, np.float64))
    return np.mean([np.diag(q) - np.outer(q, q) for q in p], axis=0)


def _orthogonal_means(seed, num_classes, d, sigma_c2):
    """K pairwise orthogonal class means of squared length d sigma_c2 (rows), and their basis."""
    basis, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return np.sqrt(d * sigma_c2) * basis[:, :num_classes].T, basis


# --- Gamma_p (Eq. 10, Sec. 4, Appendix C) ---------------------------------------------------------


@pytest.mark.parametrize("num_classes", [2, 3, 10, 50])
def test_gamma_p_in_one_to_sqrt_k_minus_one(num_classes):
    upper = np.sqrt(num_classes - 1)
    for seed, concentration in enumerate([0.05, 0.3, 1.0, 10.0, 1000.0]):
        probs = _dirichlet(seed, concentration, num_classes, 200)
        singles = jax.vmap(rm.gamma_p)(probs)  # 200 single p
        batches = jax.vmap(rm.gamma_p)(probs.reshape(20, 10, num_classes))  # 20 batches of 10
        # tiny concentrations give one-hots; [1e-27, 1.0, 0] (max rounds to 1) is still defined
        single_defined = np.count_nonzero(probs, axis=-1) >= 2
        np.testing.assert_array_equal(np.isnan(singles), ~single_defined)
        batch_defined = single_defined.reshape(20, 10).any(axis=1)
        np.testing.assert_array_equal(np.isnan(batches), ~batch_defined)
        for gamma, defined in [(singles, single_defined), (batches, batch_defined)]:
            gamma = np.asarray(gamma)[defined]
            assert gamma.size > 0.5 * len(defined)
            assert np.all(gamma >= 1 - 1e-12) and np.all(gamma <= upper + 1e-12)
        if num_classes == 2:  # rank one: Gamma_p = 1 for every p
            np.testing.assert_allclose(np.asarray(singles)[single_defined], 1, rtol=1e-12)


@pytest.mark.parametrize("num_classes", [2, 3, 10, 50])
def test_gamma_p_maximal_at_uniform(num_classes):
    uniform = np.full(num_classes, 1 / num_classes)
    chex.assert_trees_all_close(rm.gamma_p(uniform), np.sqrt(num_classes - 1), rtol=1e-12)
    chex.assert_trees_all_close(
        rm.gamma_p(np.tile(uniform, (30, 1))), np.sqrt(num_classes - 1), rtol=1e-12
    )
    perturbed = 0.99 * uniform + 0.01 * _dirichlet(1, 1.0, num_classes)
    if num_classes > 2:  # any perturbation lowers it (K = 2: Gamma_p = 1 always)
        assert float(rm.gamma_p(perturbed)) < np.sqrt(num_classes - 1) - 1e-9


@pytest.mark.parametrize("n", [None, 30])
def test_gamma_p_matches_eigenvalues(n):
    for seed, concentration in enumerate([0.05, 0.5, 5.0]):
        probs = _dirichlet(seed, concentration, K, n)
        reference = _dense_hessian(probs)
        chex.assert_trees_all_close(rm.gamma_p(probs), _curvature(reference), rtol=1e-10)
        chex.assert_trees_all_close(rm.psd_softmax_hessian(probs), reference, atol=1e-15)


@pytest.mark.parametrize("s", range(2, 11))
def test_eq11_limit_with_order_eps_convergence(s):
    limit = 4 * (s - 1) / (s + 2)
    epsilons = np.array([1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
    gammas = jax.vmap(lambda eps: rm.gamma_p(rm.p_s_eps(s, eps, K)))(epsilons)
    errors = np.abs(np.asarray(gammas) ** 2 - limit)
    assert errors[-1] < 1e-4
    if s == 2:  # p(2, eps) gives a rank-one M: Gamma_p = 1 exactly
        np.testing.assert_allclose(errors, 0, atol=1e-12)
    else:  # error = c eps + O(eps^2): shrinks tenfold per decade of eps
        ratios = errors[:-1] / errors[1:]
        np.testing.assert_allclose(ratios, 10, rtol=0.25)


def test_eq11_values_quoted_in_paper():
    chex.assert_trees_all_close(float(rm.gamma_p(rm.p_s_eps(10, 1e-9, K))) ** 2, 3.0, atol=1e-6)
    chex.assert_trees_all_close(float(rm.gamma_p(rm.p_s_eps(2, 1e-9, K))) ** 2, 1.0, atol=1e-6)


@pytest.mark.parametrize("s, eps", [(3, 1e-6), (3, 1e-7), (10, 1e-7)])
def test_gamma_p_near_one_hot_float32(s, eps):
    """1 - p_max cancels in float32; the closed form must still reach the Eq. (11) limit."""
    probs = rm.p_s_eps(s, eps, K, jnp.float32)
    gamma = rm.gamma_p(probs)
    chex.assert_type(gamma, jnp.float32)
    chex.assert_trees_all_close(float(gamma) ** 2, 4 * (s - 1) / (s + 2), rtol=1e-4)


def test_gamma_p_one_hot_is_nan_and_flagged():
    one_hot = np.eye(K)[3]
    assert np.isnan(rm.gamma_p(one_hot))
    assert not bool(rm.gamma_p_is_defined(one_hot))
    assert np.isnan(rm.expected_gterm_curvature(one_hot, 1.0, 1.0, 50))
    batch = np.eye(K)[np.arange(30) % K]
    assert np.isnan(rm.gamma_p(batch))
    # a single non-one-hot sample in the batch makes it defined
    batch[-1] = rm.p_s_eps(2, 1e-3, K)
    assert bool(rm.gamma_p_is_defined(batch))
    chex.assert_trees_all_close(rm.gamma_p(batch), 1.0, rtol=1e-12)


def test_gamma_p_float32_matches_float64():
    probs = _dirichlet(3, 0.7, K, 30)
    gamma32 = rm.gamma_p(probs.astype(np.float32))
    chex.assert_type(gamma32, jnp.float32)
    np.testing.assert_allclose(gamma32, rm.gamma_p(probs), rtol=1e-5)


# --- Appendix B: eigenvalues ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_interlacing_single_p(seed):
    probs = _dirichlet(seed, 0.5)
    lam = np.asarray(rm.softmax_hessian_eigenvalues(probs))
    p_sorted = np.sort(np.asarray(probs))[::-1]
    tol = 1e-14
    assert np.all(p_sorted[:-1] + tol >= lam[:-1])
    assert np.all(lam[:-1] + tol >= p_sorted[1:])
    assert abs(lam[-1]) < tol


def test_uniform_outliers_equal_one_over_k():
    lam = rm.softmax_hessian_eigenvalues(np.full(K, 1 / K))
    chex.assert_trees_all_close(lam[:-1], np.full(K - 1, 1 / K), atol=1e-15)
    chex.assert_trees_all_close(lam[-1], 0.0, atol=1e-15)
    # the expected G-term: K - 1 outliers d sigma_c2 / K + bulk, bulk = (1 - 1/K) sigma_e2
    eig = rm.expected_gterm_eigenvalues(np.full(K, 1 / K), 2.0, 3.0, 40)
    bulk = (1 - 1 / K) * 3.0
    chex.assert_trees_all_close(eig[: K - 1], np.full(K - 1, bulk + 40 * 2.0 / K), rtol=1e-13)
    chex.assert_trees_all_close(eig[K - 1 :], np.full(40 - K + 1, bulk), rtol=1e-13)


@pytest.mark.parametrize("n", [None, 30])
@pytest.mark.parametrize("d", [K, 37])
def test_eigenvalue_closed_form_matches_dense(n, d):
    probs = _dirichlet(d, 0.4, K, n)
    eig = rm.expected_gterm_eigenvalues(probs, 0.3, 0.7, d)
    chex.assert_shape(eig, (d,))
    dense = np.linalg.eigvalsh(np.asarray(rm.expected_gterm(probs, 0.3, 0.7, d)))[::-1]
    chex.assert_trees_all_close(eig, dense, atol=1e-12)
    assert np.all(np.diff(np.asarray(eig)) <= 0)


# --- Eq. (7) and Eq. (8) --------------------------------------------------------------------------


def test_expected_gterm_structure():
    probs = _dirichlet(0, 1.0, K, 30)
    g = rm.expected_gterm(probs, 0.5, 0.25, 37)
    chex.assert_shape(g, (37, 37))
    t = np.mean(1 - np.sum(np.asarray(probs) ** 2, axis=-1))
    block = np.pad(_dense_hessian(probs), ((0, 37 - K), (0, 37 - K)))
    chex.assert_trees_all_close(g, 37 * 0.5 * block + t * 0.25 * np.eye(37), atol=1e-14)


@pytest.mark.parametrize("n", [None, 30])
def test_eq8_equals_trace_over_frobenius_of_dense(n):
    rng = np.random.default_rng(0 if n is None else n)
    for trial in range(20):
        probs = _dirichlet(trial, float(rng.choice([0.05, 0.5, 5.0])), K, n)
        sigma_c2 = 10 ** rng.uniform(-4, 4)
        sigma_e2 = float(rng.choice([0.0, 10 ** rng.uniform(-4, 4)]))
        d = int(rng.choice([K, 37]))
        predicted = rm.expected_gterm_curvature(probs, sigma_c2, sigma_e2, d)
        dense = _curvature(rm.expected_gterm(probs, sigma_c2, sigma_e2, d))
        chex.assert_trees_all_close(predicted, dense, rtol=1e-10)


def test_eq8_printed_formula_with_batch_gamma():
    """The paper's printed Eq. (8), evaluated literally with the batch Gamma_p."""
    probs = _dirichlet(5, 0.3, K, 30)
    sigma_c2, sigma_e2, d = 0.2, 1.3, 50
    gamma = float(rm.gamma_p(probs))
    printed = (
        np.sqrt(d)
        * (sigma_c2 + sigma_e2)
        / np.sqrt(sigma_e2**2 + 2 * sigma_e2 * sigma_c2 + d * sigma_c2**2 / gamma**2)
    )
    chex.assert_trees_all_close(
        rm.expected_gterm_curvature(probs, sigma_c2, sigma_e2, d), printed, rtol=1e-12
    )


@pytest.mark.parametrize("d", [K, 50, 61_170])
def test_eq8_in_one_to_sqrt_d(d):
    for seed, concentration in enumerate([0.01, 0.3, 1.0, 100.0]):
        for n in [None, 30]:
            probs = _dirichlet(seed, concentration, K, n)
            for sigma_c2 in [1e-8, 1.0, 1e6, 1e30]:
                for sigma_e2 in [0.0, 1e-12, 1.0, 1e6]:
                    c = float(rm.expected_gterm_curvature(probs, sigma_c2, sigma_e2, d))
                    assert 1 - 1e-12 <= c <= np.sqrt(d) * (1 + 1e-12), (sigma_c2, sigma_e2)


def test_eq8_limits():
    probs = _dirichlet(2, 0.5, K, 30)
    # no residuals: the curvature of the expected G-term is Gamma_p itself
    chex.assert_trees_all_close(
        rm.expected_gterm_curvature(probs, 1.0, 0.0, 50), rm.gamma_p(probs), rtol=1e-12
    )
    # no class means: a multiple of the identity, curvature sqrt(d)
    chex.assert_trees_all_close(rm.expected_gterm_curvature(probs, 0.0, 1.0, 50), np.sqrt(50))


def test_eq8_float32():
    probs = _dirichlet(4, 0.5, K, 30)
    c32 = rm.expected_gterm_curvature(probs.astype(np.float32), 0.5, 0.5, 50)
    chex.assert_type(c32, jnp.float32)
    np.testing.assert_allclose(c32, rm.expected_gterm_curvature(probs, 0.5, 0.5, 50), rtol=1e-5)
    chex.assert_type(rm.expected_gterm(probs.astype(np.float32), 0.5, 0.5, 20), jnp.float32)


# --- estimators and Monte-Carlo checks on synthetic data from the model ---------------------------


def _synthetic_jacobians(seed, n, d, sigma_c2, sigma_e2, dtype=np.float64):
    means, basis = _orthogonal_means(seed, K, d, sigma_c2)
    residuals = np.sqrt(sigma_e2) * np.random.default_rng(seed + 1).normal(size=(n, K, d))
    return (means[None] + residuals).astype(dtype), means, basis


def test_logit_gradient_stats_recovers_sigmas():
    sigma_c2, sigma_e2 = 0.8, 2.5
    jr, means, _ = _synthetic_jacobians(0, 4000, 50, sigma_c2, sigma_e2)
    stats = rm.logit_gradient_stats(jr)
    chex.assert_shape(stats.class_means, (K, 50))
    chex.assert_trees_all_close(stats.sigma_c2, sigma_c2, rtol=0.03)
    chex.assert_trees_all_close(stats.sigma_e2, sigma_e2, rtol=0.03)
    chex.assert_trees_all_close(stats.class_means, means, atol=5 * np.sqrt(sigma_e2 / 4000))
    stats32 = rm.logit_gradient_stats(jr.astype(np.float32))
    chex.assert_type(stats32.sigma_c2, jnp.float32)
    np.testing.assert_allclose(stats32.sigma_e2, stats.sigma_e2, rtol=1e-4)


def test_logit_gradient_stats_unbiased_correction():
    """With N = 4 the plain sigma_c2 is biased by sigma_e2 / N = 1; the corrected one is not."""
    sigma_c2, sigma_e2, n = 1.0, 4.0, 4
    plain, corrected = [], []
    for seed in range(20):
        jr, _, _ = _synthetic_jacobians(seed, n, 50, sigma_c2, sigma_e2)
        plain.append(rm.logit_gradient_stats(jr))
        corrected.append(rm.logit_gradient_stats(jr, unbiased=True))
    plain_c2 = np.mean([s.sigma_c2 for s in plain])
    plain_e2 = np.mean([s.sigma_e2 for s in plain])
    chex.assert_trees_all_close(plain_c2, sigma_c2 + sigma_e2 / n, rtol=0.05)
    chex.assert_trees_all_close(plain_e2, sigma_e2 * (n - 1) / n, rtol=0.03)
    chex.assert_trees_all_close(np.mean([s.sigma_c2 for s in corrected]), sigma_c2, rtol=0.1)
    chex.assert_trees_all_close(np.mean([s.sigma_e2 for s in corrected]), sigma_e2, rtol=0.03)


@pytest.mark.parametrize("concentration", [0.2, 5.0])
def test_monte_carlo_gterm_approaches_eq7(concentration):
    n, d, sigma_c2, sigma_e2 = 4000, 50, 0.6, 1.0
    jr, _, basis = _synthetic_jacobians(7, n, d, sigma_c2, sigma_e2)
    probs = np.asarray(_dirichlet(11, concentration, K, n))
    # (1/N) sum_mu J^T (diag p - p p^T) J, with (diag p - p p^T) J = p * (J - p^T J)
    hess_jr = probs[:, :, None] * (jr - np.sum(probs[:, :, None] * jr, axis=1, keepdims=True))
    empirical = jr.reshape(n * K, d).T @ hess_jr.reshape(n * K, d) / n
    rotated = basis.T @ empirical @ basis  # class-mean directions first, as in Eq. (7)
    expected = np.asarray(rm.expected_gterm(probs, sigma_c2, sigma_e2, d))
    rel = np.linalg.norm(rotated - expected) / np.linalg.norm(expected)
    assert rel < 0.1
    chex.assert_trees_all_close(np.trace(empirical), np.trace(expected), rtol=0.02)
    chex.assert_trees_all_close(
        _curvature(empirical), rm.expected_gterm_curvature(probs, sigma_c2, sigma_e2, d), rtol=0.03
    )


@pytest.mark.parametrize(
    "prior",
    [np.full(K, 0.1), np.linspace(1, 3, K) / np.linspace(1, 3, K).sum(), np.eye(K)[0] * 0.5 + 0.05],
)
def test_eq9_gradient_norm_on_synthetic_model(prior):
    n, d, sigma_c2, sigma_e2 = 3000, 200, 0.02, 0.02  # d sigma_c2 = 4, sqrt(d sigma_c2) = 2
    rng = np.random.default_rng(3)
    jr, _, _ = _synthetic_jacobians(5, n, d, sigma_c2, sigma_e2)
    labels = rng.choice(K, size=n, p=prior)
    # a biased model: Q^ = mean p differs from the prior Q
    logits = rng.normal(size=(n, K)) + np.arange(K) / 4
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    residual = probs - np.eye(K)[labels]
    mean_gradient = np.einsum("nkd,nk->d", jr, residual) / n  # Eq. (9), first line
    norm = np.linalg.norm(mean_gradient)
    exact = float(rm.expected_gradient_norm(probs, labels, sigma_c2, d))
    paper = float(rm.expected_gradient_norm(probs, labels, sigma_c2, d, reading="paper"))
    chex.assert_trees_all_close(norm, exact, rtol=0.03)
    assert abs(norm - paper) > 0.5 * norm  # the printed reading is off by sqrt(d sigma_c2) = 2
    # the prior may also be given as one-hot labels or as the empirical prior vector
    one_hot = np.eye(K)[labels]
    chex.assert_trees_all_close(rm.expected_gradient_norm(probs, one_hot, sigma_c2, d), exact)
    chex.assert_trees_all_close(
        rm.expected_gradient_norm(probs, one_hot.mean(0), sigma_c2, d), exact
    )


def test_eq9_vanishes_when_average_prediction_matches_prior():
    probs = _dirichlet(0, 1.0, K, 30)
    q_hat = np.asarray(probs).mean(0)
    chex.assert_trees_all_close(rm.expected_gradient_norm(probs, q_hat, 1.0, 50), 0.0, atol=1e-15)


# --- entropy, p(S, eps), errors -------------------------------------------------------------------


def test_softmax_entropy():
    chex.assert_trees_all_close(rm.softmax_entropy(np.full(K, 1 / K)), np.log(K))
    one_hot = rm.softmax_entropy(np.eye(K))
    chex.assert_shape(one_hot, (K,))
    chex.assert_trees_all_close(one_hot, np.zeros(K))
    assert np.all(np.isfinite(one_hot))
    probs = _dirichlet(1, 1.0, K, 30)
    p = np.asarray(probs)
    chex.assert_trees_all_close(rm.softmax_entropy(probs), -np.sum(p * np.log(p), axis=-1))


def test_p_s_eps():
    p = rm.p_s_eps(4, 0.01, 6)
    chex.assert_trees_all_close(p, np.array([0.01, 0.01, 0.01, 0.97, 0.0, 0.0]))
    chex.assert_type(rm.p_s_eps(4, 0.01, 6, jnp.float32), jnp.float32)
    with pytest.raises(ValueError):
        rm.p_s_eps(1, 0.1, 6)
    with pytest.raises(ValueError):
        rm.p_s_eps(7, 0.1, 6)


def test_errors_for_bad_shapes():
    probs = _dirichlet(0, 1.0, K, 30)
    with pytest.raises(ValueError, match="d >= K"):
        rm.expected_gterm(probs, 1.0, 1.0, K - 1)
    with pytest.raises(ValueError, match="d >= K"):
        rm.expected_gterm_eigenvalues(probs, 1.0, 1.0, 5)
    with pytest.raises(ValueError, match="d >= K"):
        rm.expected_gterm_curvature(probs, 1.0, 1.0, 3)
    with pytest.raises(ValueError, match="d >= K"):
        rm.expected_gradient_norm(probs, np.full(K, 0.1), 1.0, 3)
    with pytest.raises(ValueError, match="shape"):
        rm.gamma_p(np.ones((2, 3, K)) / K)
    with pytest.raises(ValueError, match="shape"):
        rm.logit_gradient_stats(np.ones((K, 5)))
    with pytest.raises(ValueError, match="shape"):
        rm.expected_gradient_norm(probs, np.full(K + 1, 0.1), 1.0, 50)
    with pytest.raises(ValueError, match="reading"):
        rm.expected_gradient_norm(probs, np.full(K, 0.1), 1.0, 50, reading="other")
