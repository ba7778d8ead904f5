"""Tests for gzone.lanczos: Lanczos / eigsh, stochastic Lanczos quadrature, trace estimators."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gzone import hutchinson
from gzone import lanczos as lz

# float64 reference runs (global for the worker process; float32 tests use explicit dtypes)
jax.config.update("jax_enable_x64", True)

try:
    from jax import enable_x64 as _x64_mode
except ImportError:  # older jax
    from jax.experimental import enable_x64 as _x64_mode

N = 300
K = 10  # eigenpairs asked for in most tests
M = 50  # Lanczos steps in most tests (and eigsh's default for k <= 15): shared compilations
F32, F64 = jnp.float32, jnp.float64


def _dense(v, a):
    """Matvec with its matrix as a parameter: one compiled Lanczos step serves every test."""
    return a @ v


def _dense_f32_only(v, a):
    assert v.dtype == F32, v.dtype  # the matvec always sees its own dtype
    return a @ v


def _zero(v):
    return jnp.zeros_like(v)


def _sym(lam, seed=0):
    """A = U diag(lam) Uᵀ with a random orthogonal U; returns (A, U) as float64 numpy arrays."""
    lam = np.asarray(lam, np.float64)
    u, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((lam.size, lam.size)))
    return (u * lam) @ u.T, u


def _tridiagonal(result):
    """T from Lanczos coefficients, in numpy (also checks the meaning of alphas/betas)."""
    alphas, betas = map(np.asarray, result[:2])
    return np.diag(alphas) + np.diag(betas[:-1], 1) + np.diag(betas[:-1], -1)


def _key(seed):
    return jax.random.PRNGKey(seed)


_rng = np.random.default_rng(1)
SPECTRA = {
    # two tight clusters of 10 (gaps 1e-2) either side of a uniform bulk
    "clustered": np.r_[
        10.003 + 0.01 * np.arange(10), -10.05 - 0.01 * np.arange(10), _rng.uniform(-1, 1, N - 20)
    ],
    "repeated": np.r_[[5.0] * 4, [3.0] * 6, [1.0] * 40, [0.0] * 150, [-2.0] * 100],
    "zeros": np.r_[
        np.zeros(200), _rng.uniform(-0.5, 0.5, 80), np.linspace(2, 6, 10), np.linspace(-4, -1.5, 10)
    ],
    "g_term": np.r_[np.geomspace(0.1, 50, 9), np.zeros(N - 9)],  # rank-9 PSD, a Gauss-Newton term
    "h_term": np.r_[  # indefinite: bulk on [-2, 2] plus outliers on both sides
        2 * np.cos(np.linspace(0, np.pi, N - 20)), np.geomspace(3, 30, 10), -np.geomspace(3, 6, 10)
    ],
}


def _expected(lam, which, k):
    lam = np.sort(lam)
    if which == "LA":
        return lam[::-1][:k]
    if which == "SA":
        return lam[:k]
    return lam[np.argsort(-np.abs(lam), stable=True)][:k]


# ----------------------------------------------------------------------------------- eigsh


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
@pytest.mark.parametrize("name", list(SPECTRA))
def test_eigsh_matches_eigvalsh(name, which):
    a, _ = _sym(SPECTRA[name])
    ref = np.linalg.eigvalsh(a)
    res = lz.eigsh(_dense, N, K, a, key=_key(0), num_iters=M, which=which, dtype=F64)
    scale = np.abs(ref).max()
    want = _expected(ref, which, K)
    np.testing.assert_allclose(res.eigenvalues, want, rtol=1e-6, atol=1e-6 * scale)
    assert res.eigenvalues.dtype == F64 and res.eigenvectors.shape == (N, K)
    assert float(res.residual_norms.max()) < 1e-6 * scale


def test_eigenvectors_orthonormal_and_residuals():
    lam = SPECTRA["h_term"]
    a, u = _sym(lam)
    res = lz.eigsh(_dense, N, K, a, key=_key(3), which="LM", dtype=F64)
    v, theta = np.asarray(res.eigenvectors), np.asarray(res.eigenvalues)
    np.testing.assert_allclose(v.T @ v, np.eye(K), atol=1e-10)
    true_res = np.linalg.norm(a @ v - v * theta, axis=0)
    np.testing.assert_allclose(res.residual_norms, true_res, atol=1e-12)
    # separated outliers: eigenvectors agree with the true ones up to sign
    true = u[:, np.argsort(-np.abs(lam))[:K]]
    np.testing.assert_allclose(np.abs(np.sum(true * v, axis=0)), 1.0, atol=1e-8)


@pytest.mark.parametrize("name", ["h_term", "g_term"])  # without and with breakdowns
def test_lanczos_relation_and_ritz_residuals(name):
    a, _ = _sym(SPECTRA[name])
    m = M
    v0 = np.random.default_rng(0).standard_normal(N)
    alphas, betas, basis = map(np.asarray, lz.lanczos_tridiag(_dense, v0, m, a))
    q, t = np.asarray(basis).T, _tridiagonal((alphas, betas))
    assert bool((betas == 0).any()) == (name == "g_term")
    np.testing.assert_allclose(q.T @ q, np.eye(m + 1), atol=1e-12)
    np.testing.assert_allclose(q[:, 0], v0 / np.linalg.norm(v0), atol=1e-15)
    # A Q_m = Q_m T_m + beta_m q_{m+1} e_mᵀ
    relation = a @ q[:, :m] - q[:, :m] @ t - float(betas[-1]) * np.outer(q[:, m], np.eye(m)[-1])
    assert np.abs(relation).max() < 1e-10 * np.abs(a).max()
    # the Lanczos residual estimate |beta_m s_{m,i}| equals the true Ritz residual ||A y - θ y||
    theta, s = np.linalg.eigh(t)
    y = q[:, :m] @ s
    true_res = np.linalg.norm(a @ y - y * theta, axis=0)
    np.testing.assert_allclose(true_res, np.abs(float(betas[-1]) * s[-1]), atol=1e-10)


def test_float32_default_dtype():
    lam = SPECTRA["h_term"]
    a, _ = _sym(lam)
    res = lz.eigsh(_dense_f32_only, N, K, jnp.asarray(a, F32), key=_key(0))
    assert res.eigenvalues.dtype == F32 and res.eigenvectors.dtype == F32
    np.testing.assert_allclose(res.eigenvalues, np.sort(lam)[::-1][:K], rtol=1e-5)


# ----------------------------------------------------------------------------------- breakdown


def test_rank_deficient_breakdown_no_nan():
    lam = SPECTRA["g_term"]
    a, _ = _sym(lam)
    out = lz.lanczos_tridiag(_dense, jnp.ones(N, F64), M, a)
    assert all(np.isfinite(x).all() for x in out)
    assert int((out.betas == 0).sum()) >= 40  # the Krylov space is exhausted after ~rank steps
    res = lz.eigsh(_dense, N, K, a, key=_key(1), dtype=F64)
    np.testing.assert_allclose(res.eigenvalues, _expected(lam, "LA", K), rtol=1e-8, atol=1e-10)
    assert np.isfinite(res.eigenvectors).all()


def test_zero_matrix():
    out = lz.lanczos_tridiag(_zero, jnp.ones(N, F64), M)
    out = lz.LanczosResult(*map(np.asarray, out))
    assert np.isfinite(out.basis).all() and (out.betas == 0).all() and (out.alphas == 0).all()
    np.testing.assert_allclose(out.basis @ out.basis.T, np.eye(M + 1), atol=1e-12)  # restarts
    res = lz.eigsh(_zero, N, K, key=_key(0), dtype=F64)
    assert (np.asarray(res.eigenvalues) == 0).all() and (np.asarray(res.residual_norms) == 0).all()
    kw = {"key": _key(0), "num_probes": 2, "num_iters": M, "dtype": F64}
    grid, density = map(np.asarray, lz.spectral_density(_zero, N, **kw))
    assert np.isfinite(density).all() and abs(grid[np.argmax(density)]) < 1e-2
    est, se = hutchinson.trace_estimate(_zero, N, key=_key(0), num_probes=30, dtype=F64)
    assert float(est) == 0 and float(se) == 0


def test_start_vector_in_invariant_subspace():
    lam = SPECTRA["g_term"]
    a, u = _sym(lam)
    v0 = jnp.asarray(u[:, np.argsort(lam)[::-1][:3]] @ np.array([1.0, 2.0, 3.0]))  # top-3 space
    out = lz.lanczos_tridiag(_dense, v0, M, a)
    assert float(out.betas[2]) == 0.0 and np.isfinite(out.basis).all()
    res = lz.eigsh(_dense, N, K, a, key=_key(0), dtype=F64, v0=v0)
    np.testing.assert_allclose(res.eigenvalues, _expected(lam, "LA", K), rtol=1e-8, atol=1e-10)


def test_zero_start_vector_and_full_dimension():
    lam = np.linspace(-1, 2, 40)
    a, _ = _sym(lam)
    out = lz.lanczos_tridiag(_dense, jnp.zeros(40, F64), 40, a)  # falls back to the ones vector
    assert np.isfinite(out.basis).all() and np.isfinite(out.alphas).all()
    ritz = np.linalg.eigvalsh(_tridiagonal(out))
    np.testing.assert_allclose(ritz, lam, atol=1e-12)


# ----------------------------------------------------------------------------------- drivers/dtypes


def _assert_same_to_rounding(x, y, dtype, factor, scale=None):
    """x ≈ y to ``factor`` ulps of ``dtype`` relative to ``scale`` (default: the largest entry).
    XLA may fuse and order the same arithmetic differently inside a loop body and in a standalone
    step; through the recurrence such rounding differences grow, so ``factor`` is generous."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if scale is None:
        scale = max(np.abs(x).max(initial=0.0), np.abs(y).max(initial=0.0), np.finfo(dtype).tiny)
    np.testing.assert_allclose(x, y, rtol=0, atol=factor * np.finfo(dtype).eps * scale)


@pytest.mark.parametrize("name", ["h_term", "g_term"])
def test_drivers_identical(name):
    # the two drivers run the same step function: equal to rounding of the matvec's dtype (bit
    # equality held on jax 0.10.1, not on 0.12, where 50 steps differ by up to ~1e-12 relative)
    a, _ = _sym(SPECTRA[name])
    v0 = jnp.asarray(np.random.default_rng(2).standard_normal(N))
    host = lz.lanczos_tridiag(_dense, v0, M, a, driver="host")
    fori = lz.lanczos_tridiag(_dense, v0, M, a, driver="fori")
    for x, y in zip(host, fori):
        _assert_same_to_rounding(x, y, F64, factor=1e5)
    kw = {"key": _key(5), "dtype": F32, "reorth_dtype": F64}
    host = lz.eigsh(_dense_f32_only, N, K, jnp.asarray(a, F32), driver="host", **kw)
    fori = lz.eigsh(_dense_f32_only, N, K, jnp.asarray(a, F32), driver="fori", **kw)
    norm = np.abs(np.asarray(host.eigenvalues)).max()  # residuals are rounding noise of ‖A‖
    _assert_same_to_rounding(host.eigenvalues, fori.eigenvalues, F32, factor=1e3)
    # eigenvectors are determined only where the eigenvalue is separated (g_term's 10th lies in a
    # 291-dimensional null space: any null vector is right, and rounding picks one)
    lam = np.sort(SPECTRA[name])[::-1]
    gaps = np.minimum(np.abs(np.diff(lam, prepend=np.inf)), np.abs(np.diff(lam, append=-np.inf)))[:K]
    separated = gaps > 1e-3 * norm
    assert separated.sum() >= 9
    _assert_same_to_rounding(host.eigenvectors[:, separated], fori.eigenvectors[:, separated], F32,
                             factor=1e3)
    _assert_same_to_rounding(host.residual_norms, fori.residual_norms, F32, factor=1e2, scale=norm)


def test_float32_matvec_float64_recurrence():
    a32 = jnp.asarray(_sym(np.geomspace(1e-6, 1.0, N))[0], F32)  # ill-conditioned PSD
    ref = np.linalg.eigvalsh(np.asarray(a32, np.float64))[::-1][:10]
    errors, orth = {}, {}
    for rd in (None, F64):
        res = lz.eigsh(_dense_f32_only, N, K, a32, key=_key(0), reorth_dtype=rd)
        assert res.eigenvalues.dtype == (F64 if rd else F32)
        errors[rd] = np.abs(np.asarray(res.eigenvalues, np.float64) - ref).max()
        out = lz.lanczos_tridiag(_dense_f32_only, jnp.ones(N, F32), M, a32, reorth_dtype=rd)
        q = np.asarray(out.basis, np.float64)
        orth[rd] = np.abs(q @ q.T - np.eye(M + 1)).max()
    assert orth[F64] < 1e-12 < orth[None]
    assert errors[F64] <= errors[None] and errors[F64] < 1e-7


def test_float64_needs_x64():
    with _x64_mode(False):
        a = np.eye(10, dtype=np.float32)
        with pytest.raises(ValueError, match="jax_enable_x64"):
            lz.eigsh(_dense, 10, 2, a, key=_key(0), reorth_dtype=F64)
        with pytest.raises(ValueError, match="jax_enable_x64"):
            hutchinson.trace_estimate(_dense, 10, a, key=_key(0), num_probes=4, dtype=F64)


def test_deterministic():
    a, _ = _sym(SPECTRA["h_term"])
    runs = [lz.eigsh(_dense, N, K, a, key=_key(7), dtype=F64) for _ in range(2)]
    for x, y in zip(*runs):
        np.testing.assert_array_equal(x, y)
    other = lz.eigsh(_dense, N, K, a, key=_key(8), dtype=F64)
    assert not np.array_equal(other.eigenvectors, runs[0].eigenvectors)
    kw = {"key": _key(7), "num_probes": 2, "num_iters": M, "dtype": F64}
    quads = [lz.slq_quadrature(_dense, N, a, **kw) for _ in range(2)]
    for x, y in zip(*quads):
        np.testing.assert_array_equal(x, y)
    kw = {"key": _key(7), "num_probes": 30, "method": "hutch++", "dtype": F64}
    est = [hutchinson.trace_estimate(_dense, N, a, **kw) for _ in range(2)]
    np.testing.assert_array_equal(est[0], est[1])


def test_params_do_not_recompile(compilations):
    # a fixed matvec function with its arrays passed as *params compiles once per shape
    a1, a2 = _sym(SPECTRA["h_term"])[0], _sym(SPECTRA["g_term"])[0]
    lz.eigsh(_dense, N, K, a1, key=_key(0), dtype=F64)
    with compilations() as compiled:
        res = lz.eigsh(_dense, N, K, a2, key=_key(0), dtype=F64)
        op = lz.eigsh(lz.Operator(_dense, (a2,)), N, K, key=_key(0), dtype=F64)  # bound operands
    assert compiled == []
    for x, y in zip(res, op):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(
        np.asarray(res.eigenvalues)[:9], np.sort(SPECTRA["g_term"])[::-1][:9], rtol=1e-8
    )


# ----------------------------------------------------------------------------------- SLQ


def test_slq_moments_exact_for_diagonal():
    # Rademacher probes on a diagonal matrix: zᵀAᵖz / n = tr(Aᵖ) / n exactly, and Gauss quadrature
    # with m nodes is exact for polynomials of degree < 2m
    lam = np.r_[np.linspace(-2, 1, 200), np.linspace(3, 5, 100)]
    kw = {"key": _key(0), "num_probes": 3, "num_iters": M, "dtype": F64}
    nodes, weights = map(np.asarray, lz.slq_quadrature(_dense, N, np.diag(lam), **kw))
    assert nodes.shape == weights.shape == (3, M) and (weights >= 0).all()
    for p in range(6):
        moments = (weights * nodes**p).sum(1)
        np.testing.assert_allclose(moments, np.mean(lam**p), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_spectral_density_cluster_masses(probe):
    rng = np.random.default_rng(0)
    centres, masses = np.array([-1.0, 0.0, 3.0]), np.array([0.2, 0.5, 0.3])
    lam = np.concatenate(
        [c + rng.uniform(-0.05, 0.05, int(p * N)) for c, p in zip(centres, masses)]
    )
    a, _ = _sym(lam)
    kw = {"key": _key(1), "num_probes": 20, "num_iters": M, "probe": probe, "dtype": F64}
    grid, density = map(np.asarray, lz.spectral_density(_dense, N, a, **kw))
    assert np.isfinite(density).all() and (density >= 0).all()
    assert grid[0] < lam.min() and grid[-1] > lam.max()
    np.testing.assert_allclose(np.trapezoid(density, grid), 1.0, rtol=1e-6)
    for c, p in zip(centres, masses):
        window = np.abs(grid - c) <= 0.5
        mass = np.trapezoid(density[window], grid[window])
        assert abs(mass - p) < 0.04, (c, mass)
        assert abs(grid[window][np.argmax(density[window])] - c) < 0.1


def test_density_from_quadrature():
    nodes, weights = jnp.array([[0.0, 1.0], [0.5, 2.0]]), jnp.array([[0.25, 0.75], [0.5, 0.5]])
    grid = jnp.linspace(-2, 4, 2001)
    raw = lz.density_from_quadrature(nodes, weights, grid, 0.1, normalize=False)
    np.testing.assert_allclose(jnp.trapezoid(raw, grid), 1.0, rtol=1e-6)  # grid covers the mass
    np.testing.assert_allclose(jnp.trapezoid(raw * grid, grid), (0.75 + 0.25 + 1.0) / 2, rtol=1e-6)
    part = jnp.linspace(-0.5, 0.7, 300)
    density = lz.density_from_quadrature(nodes, weights, part, 0.1)
    np.testing.assert_allclose(jnp.trapezoid(density, part), 1.0)


# ----------------------------------------------------------------------------------- trace


DECAYING = 100.0 / (1.0 + np.arange(N)) ** 1.5


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
@pytest.mark.parametrize("name", ["decaying", "h_term"])
def test_trace_and_frobenius_within_3_se(method, name):
    lam = DECAYING if name == "decaying" else SPECTRA["h_term"]
    a, _ = _sym(lam, seed=4)
    for seed in range(3):
        kw = {"key": _key(seed), "num_probes": 30, "method": method, "dtype": F64}
        est, se = hutchinson.trace_estimate(_dense, N, a, **kw)
        assert abs(float(est) - lam.sum()) <= 3 * float(se)
        est, se = hutchinson.frobenius_estimate(_dense, N, a, **kw)
        assert abs(float(est) - (lam**2).sum()) <= 3 * float(se)


def test_hutchpp_has_lower_variance():
    a, _ = _sym(DECAYING, seed=4)
    for fn in (hutchinson.trace_estimate, hutchinson.frobenius_estimate):
        var = {}
        for method in ("hutchinson", "hutch++"):
            kw = {"num_probes": 30, "method": method, "dtype": F64}
            var[method] = np.var([float(fn(_dense, N, a, key=_key(s), **kw)[0]) for s in range(20)])
        assert var["hutch++"] < 0.25 * var["hutchinson"]


def test_batch_size_chunks_match():
    a, _ = _sym(SPECTRA["h_term"])
    kw = {"key": _key(0), "num_probes": 30, "dtype": F64}
    for method in ("hutchinson", "hutch++"):
        whole = hutchinson.trace_estimate(_dense, N, a, method=method, **kw)
        chunked = hutchinson.trace_estimate(_dense, N, a, method=method, batch_size=7, **kw)
        np.testing.assert_allclose(whole, chunked, rtol=1e-12)
    whole = lz.eigsh(_dense, N, K, a, key=_key(0), dtype=F64)
    chunked = lz.eigsh(_dense, N, K, a, key=_key(0), dtype=F64, batch_size=3)
    np.testing.assert_allclose(whole.residual_norms, chunked.residual_norms, rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda a, k: lz.eigsh(_dense, 20, 21, a, key=k), "exceeds the dimension"),
        (lambda a, k: lz.eigsh(_dense, 20, 0, a, key=k), "k must be a positive integer"),
        (lambda a, k: lz.eigsh(_dense, 20, 3, a, key=k, which="BE"), "unknown which"),
        (lambda a, k: lz.eigsh(_dense, 20, 5, a, key=k, num_iters=4), "k <= num_iters <= dim"),
        (lambda a, k: lz.eigsh(_dense, 20, 5, a, key=k, num_iters=21), "k <= num_iters <= dim"),
        (lambda a, k: lz.eigsh(_dense, 20, 5, a, key=k, driver="gpu"), "unknown driver"),
        (lambda a, k: lz.eigsh(_dense, 20, 5, a, key=k, v0=jnp.ones(19)), "v0 must have shape"),
        (lambda a, k: lz.eigsh(_dense, 20, 5, a, key=k, dtype=jnp.int32), "floating dtype"),
        (lambda a, k: lz.lanczos_tridiag(_dense, jnp.ones(20), 21, a), "exceeds the dimension"),
        (lambda a, k: lz.lanczos_tridiag(_dense, jnp.ones((20, 1)), 5, a), "1-D"),
        (
            lambda a, k: lz.slq_quadrature(
                _dense, 20, a, key=k, num_probes=2, num_iters=5, probe="x"
            ),
            "unknown probe",
        ),
        (
            lambda a, k: lz.spectral_density(
                _dense, 20, a, key=k, num_probes=1, num_iters=5, sigma=-1.0
            ),
            "sigma must be positive",
        ),
        (
            lambda a, k: hutchinson.trace_estimate(_dense, 20, a, key=k, num_probes=4, method="exact"),
            "unknown method",
        ),
        (
            lambda a, k: hutchinson.trace_estimate(_dense, 20, a, key=k, num_probes=3, method="hutch++"),
            "num_probes >= 4",
        ),
        (lambda a, k: hutchinson.frobenius_estimate(_dense, 20, a, key=k, num_probes=1), "num_probes >= 2"),
        (
            lambda a, k: hutchinson.trace_estimate(_dense, 20, a, key=k, num_probes=8, batch_size=0),
            "batch_size",
        ),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.eye(20, dtype=np.float32), _key(0))


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_eigsh_tol_stops_early_with_converged_pairs(which):
    # a spectrum with a well separated top and bottom, all of one sign for LA/SA, so that the
    # decoupled tail (0 for LM, beyond Gershgorin for LA/SA) would be selected if it leaked
    ends = np.concatenate([[1.0, 2.0], np.linspace(6.0, 10.0, N - 2)])
    lam = {"LA": -ends, "SA": ends, "LM": np.concatenate([[20.0, 16.0], np.linspace(1.0, 5.0, N - 2)])}[which]
    a, _ = _sym(lam, seed=4)
    full = lz.eigsh(_dense, N, 2, a, key=_key(0), num_iters=M, which=which, dtype=F64)
    early = lz.eigsh(_dense, N, 2, a, key=_key(0), num_iters=M, which=which, dtype=F64, tol=1e-8)
    assert full.num_iters == M and 2 <= early.num_iters < M
    order = {"LA": np.sort(lam)[::-1], "SA": np.sort(lam), "LM": lam[np.argsort(-np.abs(lam))]}[which]
    np.testing.assert_allclose(early.eigenvalues, order[:2], rtol=1e-7)
    assert np.all(early.residual_norms <= 1e-6 * np.abs(order[:2]))  # the true residuals
    with pytest.raises(ValueError, match="tol must be a finite number > 0"):
        lz.eigsh(_dense, N, 2, a, key=_key(0), tol=0.0)
