"""Curvature engine against dense float64 references, and the ICML paper's identities.

References: the full-batch loss Hessian from ``jax.hessian`` of a flat-parameter function, the
G-term from explicit per-sample Jacobians (``jax.jacrev``) and M = diag p − ppᵀ, and the H-term
from explicit second derivatives of the logits (Eq. 4).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FAST_RUN, FULL_OPT
from jax.flatten_util import ravel_pytree

from gzone import curvature, metrics, models, objective, subspace

RTOL64 = 1e-8


class TinyCNN(nn.Module):
    """Conv 3@3x3 → ReLU → 2x2 average pool → conv 4@3x3 → ReLU → dense K; bias-free, L = 3."""

    num_classes: int = 4

    @property
    def homogeneity_degree(self) -> int:
        return 3

    @nn.compact
    def __call__(self, x):
        h = models.avg_pool_2x2(jax.nn.relu(nn.Conv(3, (3, 3), padding="VALID", use_bias=False)(x)))
        h = jax.nn.relu(nn.Conv(4, (3, 3), padding="VALID", use_bias=False)(h))
        return nn.Dense(self.num_classes, use_bias=False)(h.reshape(h.shape[0], -1))


def tiny_problem(kind: str, dtype=jnp.float64, n: int = 11, seed: int = 0):
    """(model, params, x, y) of a tiny MLP or CNN with a few samples."""
    keys = jax.random.split(jax.random.key(seed), 3)
    if kind == "mlp":
        model, shape, k = models.MLP(widths=(6, 5, 4)), (3, 2, 1), 4
    else:
        model, shape, k = TinyCNN(), (10, 10, 2), 4
    params = models.init(model, keys[0], shape, dtype=dtype)
    x = jax.random.normal(keys[1], (n, *shape), dtype)
    y = jax.random.randint(keys[2], (n,), 0, k)
    return model, params, x, y


@functools.partial(jax.jit, static_argnums=0, compiler_options=FAST_RUN)
def dense_terms(model, params, x, y, temperature):
    """(H, G-term, H-term) as dense P×P matrices, each from its own definition (Eq. 4)."""
    flat, unravel = ravel_pytree(params)
    n = len(x)

    def logits(theta):
        return model.apply(unravel(theta), x)

    hessian = jax.hessian(lambda t: objective.cross_entropy(logits(t), y, temperature))(flat)
    jac = jax.jacrev(logits)(flat)  # (N, K, P)
    z = logits(flat)
    gterm = jnp.einsum("nkp,nkl,nlq->pq", jac, objective.logit_hessian(z, temperature), jac) / n
    logit_hessians = jax.hessian(logits)(flat)  # (N, K, P, P)
    hterm = jnp.einsum("nk,nkpq->pq", objective.logit_gradient(z, y, temperature), logit_hessians) / n
    return hessian, gterm, hterm


@functools.cache
def tiny_dense_terms(kind: str, temperature: float):
    """:func:`dense_terms` of ``tiny_problem(kind)``, computed once per process."""
    model, params, x, y = tiny_problem(kind)
    return dense_terms(model, params, x, y, temperature)


def rel_err(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize(
    "kind, input_layer", [("mlp", "auto"), ("mlp", None), ("cnn", "Conv_0"), ("cnn", None)]
)
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_projected_matches_dense_reference(kind, input_layer, chunk_size):
    """Both passes — the input-layer shortcut (a name) and the generic one (None) — against the
    dense references; ``"auto"`` must pick the MLP's declared input layer."""
    model, params, x, y = tiny_problem(kind)
    temperature = 0.7
    hessian, gterm, hterm = tiny_dense_terms(kind, temperature)
    assert rel_err(gterm + hterm, hessian) < 1e-12  # Eq. (4) holds for the references themselves
    expected = {"auto": "dense0"}.get(input_layer, input_layer)
    assert curvature.resolve_input_layer(model.apply, params, x, input_layer) == expected
    num_params = ravel_pytree(params)[0].size
    basis = subspace.orthonormal_basis(jax.random.key(5), num_params, 7, jnp.float64)
    result = curvature.projected(model.apply, params, basis, x, y, temperature,
                                 chunk_size=chunk_size, input_layer=input_layer)
    for got, ref in [(result.hessian, hessian), (result.gterm, gterm), (result.hterm, hterm)]:
        assert rel_err(got, basis.T @ ref @ basis) < RTOL64
    flat, unravel = ravel_pytree(params)

    def loss(theta):
        return objective.cross_entropy(model.apply(unravel(theta), x), y, temperature)

    np.testing.assert_allclose(result.loss, loss(flat), rtol=1e-12)
    np.testing.assert_allclose(result.gradient_norm, jnp.linalg.norm(jax.grad(loss)(flat)), rtol=1e-12)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("term", ["hessian", "gterm", "hterm"])
def test_operators_match_dense_reference(kind, term):
    model, params, x, y = tiny_problem(kind)
    dense = dict(zip(["hessian", "gterm", "hterm"], tiny_dense_terms(kind, 0.7)))[term]
    v = jax.random.normal(jax.random.key(9), (dense.shape[0],), jnp.float64)
    for chunk_size in (None, 3):
        matvec = curvature.OPERATORS[term](model.apply, params, x, y, 0.7, chunk_size=chunk_size)
        assert rel_err(matvec(v), dense @ v) < RTOL64


def test_input_layer_pass_with_biases_matches_dense_reference():
    """A Dense input layer with a bias is still linear in its parameters (kernel, bias) jointly."""
    model = models.MLP(widths=(6, 5, 4), use_bias=True)
    params = models.init(model, jax.random.key(0), (3, 2, 1), dtype=jnp.float64)
    params = jax.tree_util.tree_map(  # non-zero biases, so the bias rows of R matter
        lambda a: a + 0.3 * jax.random.normal(jax.random.key(a.size), a.shape, a.dtype), params)
    x = jax.random.normal(jax.random.key(1), (9, 3, 2, 1), jnp.float64)
    y = jax.random.randint(jax.random.key(2), (9,), 0, 4)
    hessian, gterm, hterm = dense_terms(model, params, x, y, 1.0)
    basis = subspace.orthonormal_basis(jax.random.key(3), ravel_pytree(params)[0].size, 6, jnp.float64)
    result = curvature.projected(model.apply, params, basis, x, y, input_layer="dense0")
    for got, ref in [(result.hessian, hessian), (result.gterm, gterm), (result.hterm, hterm)]:
        assert rel_err(got, basis.T @ ref @ basis) < RTOL64


@pytest.mark.parametrize("name, shape", [("lenet300", (28, 28, 1)), ("lenet5", (32, 32, 3))])
def test_input_layer_pass_matches_generic_pass_on_paper_models(name, shape):
    """The paper's models take the shortcut by default; it must agree with the generic pass
    (float64, α = 3 and T = 0.7 so that no term is trivially small)."""
    model = models.make_model(name)
    params = models.scale(models.init(model, jax.random.key(0), shape, dtype=jnp.float64), 3.0)
    x = jax.random.normal(jax.random.key(1), (5, *shape), jnp.float64)
    y = jnp.arange(5)
    basis = subspace.sparse_basis(jax.random.key(2), models.num_params(params), 4, jnp.float64)
    assert curvature.resolve_input_layer(model.apply, params, x) == model.input_layer
    fast = curvature.projected(model.apply, params, basis, x, y, 0.7, chunk_size=3)
    generic = curvature.projected(model.apply, params, basis, x, y, 0.7, chunk_size=3, input_layer=None)
    for term in ("hessian", "gterm", "hterm"):
        assert rel_err(getattr(fast, term), getattr(generic, term)) < RTOL64
    np.testing.assert_allclose(fast.gradient_norm, generic.gradient_norm, rtol=1e-12)
    np.testing.assert_allclose(fast.loss, generic.loss, rtol=1e-12)


class DenseTwice(nn.Module):
    @nn.compact
    def __call__(self, x):
        layer = nn.Dense(4, use_bias=False, name="first")
        return layer(jax.nn.relu(layer(x)))


class TanhInput(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, use_bias=False)(jnp.tanh(nn.Dense(4, use_bias=False, name="first")(x)))


def test_input_layer_misuse_is_refused():
    """Naming a layer whose shortcut would be wrong fails loudly instead of returning numbers."""
    model, params, x, y = tiny_problem("mlp")
    basis = subspace.orthonormal_basis(jax.random.key(0), ravel_pytree(params)[0].size, 3, jnp.float64)
    with pytest.raises(ValueError, match="not the input layer"):
        curvature.projected(model.apply, params, basis, x, y, input_layer="dense1")
    with pytest.raises(ValueError, match="not among"):
        curvature.projected(model.apply, params, basis, x, y, input_layer="dense9")
    twice = DenseTwice()
    x2 = jnp.ones((3, 4))
    params2 = twice.init(jax.random.key(0), x2)
    with pytest.raises(ValueError, match="called 2 times"):
        curvature.projected(twice.apply, params2, jnp.eye(16)[:, :2], x2, jnp.arange(3),
                            input_layer="first")
    # a custom function without a declared input layer runs the generic pass
    tanh = TanhInput()
    params3 = tanh.init(jax.random.key(0), x2)
    assert curvature.resolve_input_layer(tanh.apply, params3, x2) is None
    assert curvature.resolve_input_layer(tanh.apply, params3, x2, "first") == "first"


def test_linear_model_has_no_hterm():
    """For logits linear in θ the H-term vanishes and H = G (Eq. 4)."""
    model = models.MLP(widths=(4,), activation="identity")
    params = models.init(model, jax.random.key(0), (5,), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (9, 5), jnp.float64)
    y = jnp.arange(9) % 4
    basis = subspace.orthonormal_basis(jax.random.key(2), 20, 8, jnp.float64)
    result = curvature.projected(model.apply, params, basis, x, y)
    assert float(jnp.max(jnp.abs(result.hterm))) < 1e-14 * float(jnp.max(jnp.abs(result.gterm)))
    np.testing.assert_allclose(result.hessian, result.gterm, rtol=1e-12, atol=1e-15)


def scaled_problem():
    model = models.MLP(widths=(8, 6, 5))  # L = 3
    params = models.init(model, jax.random.key(3), (4,), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(4), (13, 4), jnp.float64)
    y = jax.random.randint(jax.random.key(5), (13,), 0, 5)
    basis = subspace.orthonormal_basis(jax.random.key(6), 32 + 48 + 30, 10, jnp.float64)
    return model, params, x, y, basis


@functools.partial(jax.jit, static_argnums=0, compiler_options=FAST_RUN)
def _eq5_star_terms(model, params, x, y, alpha, temperature):
    """G_*(p') and H_*(p') of Eq. (5) as dense P×P matrices: the unscaled model's Jacobian and
    logit Hessians, combined with the softmax p' of the α-scaled model at temperature T (one
    compiled program instead of op-by-op dispatch of jax.hessian)."""
    flat, unravel = ravel_pytree(params)

    def logits(theta):
        return model.apply(unravel(theta), x)

    p_scaled = objective.probs(logits(alpha * flat), temperature)
    jac = jax.jacrev(logits)(flat)
    m_scaled = jax.vmap(jnp.diag)(p_scaled) - p_scaled[:, :, None] * p_scaled[:, None, :]
    g_star = jnp.einsum("nkp,nkl,nlq->pq", jac, m_scaled, jac) / len(x)
    onehot = jax.nn.one_hot(y, p_scaled.shape[-1], dtype=p_scaled.dtype)
    h_star = jnp.einsum("nk,nkpq->pq", p_scaled - onehot, jax.hessian(logits)(flat)) / len(x)
    return g_star, h_star


@pytest.mark.parametrize("seed", range(4))
def test_eq5_scaling_of_gauss_newton_terms(seed):
    """Eq. (5): G' = α^(2L−2)/T² G_*(p') and H-term' = α^(L−2)/T H_*(p'), with p' the softmax of
    the scaled model at temperature T and G_*, H_* built from the *unscaled* model's derivatives."""
    model, params, x, y, basis = scaled_problem()
    rng = np.random.default_rng(seed)
    alpha, temperature, degree = 10 ** rng.uniform(-1, 1), 10 ** rng.uniform(-1, 1), 3
    g_star, h_star = _eq5_star_terms(model, params, x, y, alpha, temperature)

    scaled = jax.tree_util.tree_map(lambda a: alpha * a, params)
    result = curvature.projected(model.apply, scaled, basis, x, y, temperature)
    g_expected = alpha ** (2 * degree - 2) / temperature**2 * basis.T @ g_star @ basis
    h_expected = alpha ** (degree - 2) / temperature * basis.T @ h_star @ basis
    assert rel_err(result.gterm, g_expected) < RTOL64
    assert rel_err(result.hterm, h_expected) < RTOL64


@pytest.mark.parametrize("alpha", [0.05, 0.5, 3.0, 40.0])
def test_temperature_alpha_power_l_restores_curvature(alpha):
    """T = α^L gives H' = α^-2 H term by term, hence equal positive curvature (Sec. 3)."""
    model, params, x, y, basis = scaled_problem()
    base = curvature.projected(model.apply, params, basis, x, y, 1.0)
    scaled = curvature.projected(
        model.apply, models.scale(params, alpha), basis, x, y, alpha**3
    )
    for term in ("hessian", "gterm", "hterm"):
        assert rel_err(getattr(scaled, term), getattr(base, term) / alpha**2) < RTOL64
        pc_base = metrics.positive_curvature(metrics.eigenvalues(getattr(base, term)))
        pc_scaled = metrics.positive_curvature(metrics.eigenvalues(getattr(scaled, term)))
        np.testing.assert_allclose(pc_scaled, pc_base, rtol=1e-9)
    np.testing.assert_allclose(scaled.loss, base.loss, rtol=1e-12)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_euler_identities(kind):
    """Homogeneity of degree L: J θ = L f and, since ∇z is of degree L − 1,
    (H-term) θ = (L − 1) ∇ℓ (the H-term's weights (p − y)/T are the loss gradient's)."""
    model, params, x, y = tiny_problem(kind)
    degree = model.homogeneity_degree
    flat = ravel_pytree(params)[0]
    z, jtheta = jax.jvp(lambda p: model.apply(p, x), (params,), (params,))
    np.testing.assert_allclose(jtheta, degree * z, rtol=1e-12, atol=1e-14)
    hterm_theta = curvature.hterm_operator(model.apply, params, x, y, 0.9)(flat)
    _, grad = curvature.loss_and_gradient(model.apply, params, x, y, 0.9)
    np.testing.assert_allclose(hterm_theta, (degree - 1) * grad, rtol=1e-10, atol=1e-14)


def test_euler_identity_fails_for_non_homogeneous_model():
    """The identity test can fail: a tanh network violates J θ = L f."""
    model = models.MLP(widths=(6, 5, 4), activation="tanh")
    params = models.init(model, jax.random.key(0), (3,), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (7, 3), jnp.float64)
    z, jtheta = jax.jvp(lambda p: model.apply(p, x), (params,), (params,))
    assert rel_err(jtheta, 3 * z) > 1e-2


def test_chunking_does_not_change_results():
    model, params, x, y = tiny_problem("mlp", n=23)
    basis = subspace.sparse_basis(jax.random.key(1), ravel_pytree(params)[0].size, 5, jnp.float64)
    whole = curvature.projected(model.apply, params, basis, x, y, chunk_size=None)
    for chunk_size in (1, 5, 22):
        part = curvature.projected(model.apply, params, basis, x, y, chunk_size=chunk_size)
        for a, b in zip(part, whole):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_projected_vmaps_over_seeds():
    model, params, x, y = tiny_problem("mlp")
    num_params = ravel_pytree(params)[0].size
    keys = jax.random.split(jax.random.key(0), 3)
    stacked_params = jax.vmap(lambda k: models.init(model, k, (3, 2, 1), dtype=jnp.float64))(keys)
    bases = jax.vmap(lambda k: subspace.orthonormal_basis(k, num_params, 4, jnp.float64))(keys)
    batched = jax.vmap(lambda p, b: curvature.projected(model.apply, p, b, x, y))(stacked_params, bases)
    for i in range(3):
        single = curvature.projected(
            model.apply, jax.tree_util.tree_map(lambda a, i=i: a[i], stacked_params), bases[i], x, y
        )
        np.testing.assert_allclose(batched.hessian[i], single.hessian, rtol=1e-10, atol=1e-14)


def _full_opt(fun, options):
    """``fun`` as the suite compiles it (``options`` None: the library's own jits at -O0), or
    wrapped in one jit compiled with ``options`` (XLA_FLAGS overridden for that program)."""
    return fun if options is None else jax.jit(fun, compiler_options=options)


#: the suite compiles the cheap way (conftest); the guards against XLA:CPU miscompiling the centred
#: G-term (jax-ml/jax#39103) also run with the XLA defaults users get
OPTIMISATION = pytest.mark.parametrize("options", [None, FULL_OPT], ids=["suite", "full-opt"])


@OPTIMISATION
def test_float32_gterm_stays_accurate_when_softmax_saturates(options):
    """At α = 30 softmax is one-hot for all but a few samples and logits reach 2e5. float32 must
    agree with float64 (centred M; shapes large enough to have exposed the jaxlib 0.10.2 CPU
    miscompilation, which returned a G-term of norm 1e7 where it is ~1). The tolerance is the
    problem's own conditioning: float32 logits of 2e5 carry absolute errors ~1e-2, which move
    the one unsaturated p ≈ e^-7.7 by ~1%."""
    model = models.MLP(widths=(64, 32, 10))
    x64 = jax.random.normal(jax.random.key(0), (1000, 16), jnp.float64)
    y = jax.random.randint(jax.random.key(1), (1000,), 0, 10)
    params64 = models.scale(models.init(model, jax.random.key(2), (16,), dtype=jnp.float64), 30.0)
    basis64 = subspace.orthonormal_basis(jax.random.key(3), 16 * 64 + 64 * 32 + 320, 50, jnp.float64)
    projected = _full_opt(lambda p, b, x: curvature.projected(model.apply, p, b, x, y), options)
    out = {}
    for dtype in (jnp.float32, jnp.float64):
        params = jax.tree_util.tree_map(lambda a, dt=dtype: a.astype(dt), params64)
        out[dtype] = projected(params, basis64.astype(dtype), x64.astype(dtype))
    for term in ("gterm", "hterm", "hessian"):
        ref = getattr(out[jnp.float64], term)
        got = getattr(out[jnp.float32], term)
        assert float(jnp.linalg.norm(got - ref)) <= 3e-2 * float(jnp.linalg.norm(ref))


@OPTIMISATION
def test_centring_is_compiled_correctly(options):
    """Guard against XLA CPU miscompiling the centred form (jax-ml/jax#39103 in jaxlib 0.10.2)."""
    rng = np.random.default_rng(0)
    u = jnp.asarray(rng.standard_normal((50, 1000, 10)), jnp.float32)
    p = jax.nn.one_hot(rng.integers(0, 10, 1000), 10, dtype=jnp.float32)
    eager = np.asarray(u) - np.einsum("nk,ank->an", np.asarray(p), np.asarray(u))[..., None]
    np.testing.assert_allclose(jax.jit(objective.centre, compiler_options=options)(p, u), eager,
                               atol=1e-6)
    quad = jax.jit(objective.centred_quadratic_form, compiler_options=options)(p, u, u)
    np.testing.assert_allclose(quad, 0.0, atol=1e-6)


def test_input_validation():
    model, params, x, y = tiny_problem("mlp")
    num_params = ravel_pytree(params)[0].size
    with pytest.raises(ValueError, match="shape"):
        curvature.projected(model.apply, params, jnp.zeros((num_params + 1, 2)), x, y)
    with pytest.raises(ValueError, match="exceeds|between"):
        subspace.orthonormal_basis(jax.random.key(0), num_params, num_params + 1)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_chunk_size_must_be_a_positive_integer(bad):
    # chunk_size=0 used to raise ZeroDivisionError deep inside the padding
    model, params, x, y = tiny_problem("mlp")
    basis = jnp.eye(ravel_pytree(params)[0].size, 3)
    for call in (lambda: curvature.projected(model.apply, params, basis, x, y, chunk_size=bad),
                 lambda: curvature.loss_and_gradient(model.apply, params, x, y, chunk_size=bad),
                 lambda: curvature.hessian_operator(model.apply, params, x, y, chunk_size=bad),
                 lambda: curvature.prepare_batches(model.apply, params, x, y, bad)):
        with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
            call()


def test_automatic_chunks_are_balanced():
    # the memory budget bounds the chunk; the chunks that needs are made equal, so the padding of
    # the last one is under the number of chunks (no chunk of mostly padding)
    model, params, x, y = tiny_problem("mlp", n=101)
    per_sample = curvature.auto_chunk_size(model.apply, params, x, 1, memory_budget=10**12)
    assert per_sample == 101
    for budget in (20_000, 50_000, 90_000, 200_000):
        chunk = curvature.auto_chunk_size(model.apply, params, x, 1, memory_budget=budget)
        largest = curvature.auto_chunk_size(model.apply, params, x[:1].repeat(10**4, 0), 1,
                                            memory_budget=budget)  # unbalanced bound: N >> chunk
        num_chunks = -(-101 // chunk)
        assert chunk <= largest and num_chunks == -(-101 // largest)
        assert 0 <= num_chunks * chunk - 101 < num_chunks
        batches = curvature.prepare_batches(model.apply, params, x, y)
        np.testing.assert_allclose(float(batches.w.sum()), 1.0, rtol=1e-12)
