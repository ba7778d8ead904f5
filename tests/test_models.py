"""Tests of gzone.models: parameter counts, architectures, init schemes, scaling, homogeneity.

The central property (ICML paper, Sec. 2-3): a bias-free ReLU/identity network with L weight layers
and average pooling is homogeneous of degree L, f(αθ, x) = α^L f(θ, x) for every α > 0, and hence
satisfies Euler's identity J_θ f · θ = L f. Biases or tanh break both; the tests check that the
same checks *fail* there, so that they can fail at all.
"""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from numpy.lib.stride_tricks import sliding_window_view

from gzone import models as m

jax.config.update("jax_enable_x64", True)

ALPHAS = np.logspace(-3, 3, 7)  # 1e-3, 1e-2, ..., 1e3

# Homogeneous models of the suite, (constructor, input shape without the batch), small inputs.
HOMOGENEOUS = {
    "lenet300": (m.LeNet300100, (28, 28, 1)),
    "lenet5": (m.LeNet5, (32, 32, 3)),
    "mlp_relu": (functools.partial(m.MLP, widths=(32, 16, 10)), (6, 6, 1)),
    "mlp_identity": (
        functools.partial(m.MLP, widths=(32, 16, 10), activation="identity"),
        (6, 6, 1),
    ),
}
# Non-homogeneous contrast models (same shapes as the MLPs above).
NON_HOMOGENEOUS = {
    "mlp_bias": (functools.partial(m.MLP, widths=(32, 16, 10), use_bias=True), (6, 6, 1)),
    "mlp_tanh": (functools.partial(m.MLP, widths=(32, 16, 10), activation="tanh"), (6, 6, 1)),
}
EXPECTED_DEGREE = {"lenet300": 3, "lenet5": 5, "mlp_relu": 3, "mlp_identity": 3}
N_SAMPLES = 3
# the one small model whose real initialisation the tests run (few shapes, few compilations)
TINY = (m.MLP(widths=(20, 20, 20), use_bias=True), (20,))


def _numpy_params(model, shape, dtype, bias_std):
    """Random parameters for ``model`` from numpy: kernels N(0, 2/fan_in), biases N(0, bias_std²).

    Homogeneity holds for every θ, so the draw need not come from :func:`gzone.models.init`; numpy
    avoids compiling JAX's PRNG for every kernel shape (seconds each on a loaded CPU). The tree
    structure is that of ``init`` (from ``jax.eval_shape``, which compiles nothing).
    """
    abstract = jax.eval_shape(lambda k: m.init(model, k, shape), jax.random.key(0))
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        if path[-1].key == "bias":
            return jnp.asarray(bias_std * rng.standard_normal(leaf.shape), dtype)
        fan_in = int(np.prod(leaf.shape[:-1]))
        return jnp.asarray(np.sqrt(2 / fan_in) * rng.standard_normal(leaf.shape), dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract)


@functools.cache
def _setup(name, dtype_name="float64", random_biases=True):
    """(model, variables, x) for a named model, cached per process.

    Biases (if any) are N(0, 1) when ``random_biases``, else zero as at init: a biased ReLU
    network with zero biases *is* homogeneous (αb = 0 = b), so the contrast needs non-zero ones.
    """
    dtype = jnp.dtype(dtype_name)
    constructor, shape = {**HOMOGENEOUS, **NON_HOMOGENEOUS}[name]
    model = constructor()
    variables = _numpy_params(model, shape, dtype, bias_std=1.0 if random_biases else 0.0)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((N_SAMPLES, *shape)), dtype)
    return model, variables, x


def _homogeneity_tol(dtype, degree):
    """Sound relative tolerance for f(αθ) vs α^L f(θ): rounding of αw (eps/2 per weight) and of the
    L layers' accumulations; measured ~5 eps for every model, this allows 100 L eps."""
    return 100 * degree * float(jnp.finfo(dtype).eps)


def _deviation(f0, outputs, degree):
    """max_α ‖f(αθ) − α^L f(θ)‖_∞ / ‖α^L f(θ)‖_∞ from f(θ) and the f(αθ), reference in float64."""
    deviations = []
    for alpha, fa in outputs.items():
        expected = alpha**degree * f0
        deviations.append(np.max(np.abs(fa - expected)) / np.max(np.abs(expected)))
    return max(deviations)


def _scaled_outputs(apply_fn, variables, x, alphas=ALPHAS):
    """f(θ, x) and {α: f(αθ, x)} as float64 numpy arrays (all finite)."""
    f0 = np.asarray(apply_fn(variables, x), np.float64)
    outputs = {}
    for alpha in map(float, alphas):
        outputs[alpha] = np.asarray(apply_fn(m.scale(variables, alpha), x), np.float64)
    chex.assert_tree_all_finite((f0, outputs))
    return f0, outputs


def homogeneity_deviation(apply_fn, variables, x, degree, alphas=ALPHAS):
    """max over α of the relative deviation of f(αθ, x) from α^L f(θ, x) (0 if homogeneous)."""
    return _deviation(*_scaled_outputs(apply_fn, variables, x, alphas), degree)


def _euler_terms(model, variables, x):
    """f(θ, x) and J_θ f · θ (the JVP along θ itself), float64 numpy."""
    f, jtheta = jax.jit(lambda p, x: jax.jvp(lambda q: model.apply(q, x), (p,), (p,)))(variables, x)
    return np.asarray(f, np.float64), np.asarray(jtheta, np.float64)


def euler_deviation(f, jtheta, degree):
    """‖J_θ f · θ − L f‖_∞ / ‖L f‖_∞: 0 for a homogeneous f of degree L (Euler's identity)."""
    return np.max(np.abs(jtheta - degree * f)) / np.max(np.abs(degree * f))


# --- parameter counts -----------------------------------------------------------------------------


def _count(model, shape):
    """num_params from abstract shapes (no compilation)."""
    shapes = jax.eval_shape(lambda k: m.init(model, k, shape), jax.random.key(0))
    return m.num_params(shapes), jax.tree_util.tree_map(lambda leaf: leaf.shape, shapes)


def test_param_count_lenet300_mnist():
    count, shapes = _count(m.LeNet300100(), (28, 28, 1))
    assert count == 784 * 300 + 300 * 100 + 100 * 10 == 266_200
    assert shapes["params"]["dense0"]["kernel"] == (784, 300)


def test_param_count_lenet5_cifar():
    # 5*5*3*6 + 5*5*6*16 + (5*5*16)*120 + 120*84 + 84*10 = 450 + 2400 + 48000 + 10080 + 840;
    # the ICML paper's 61,170 is a misprint.
    count, shapes = _count(m.LeNet5(), (32, 32, 3))
    assert count == 61_770
    assert shapes["params"]["dense0"]["kernel"] == (400, 120)  # 32 -> 28 -> 14 -> 10 -> 5


def test_param_count_mlp_8x8():
    count, _ = _count(m.MLP(widths=(300, 100, 10)), (8, 8, 1))
    assert count == 64 * 300 + 300 * 100 + 100 * 10 == 50_200


def test_param_count_lenet5_mnist():
    # 28 -> conv 24 -> pool 12 -> conv 8 -> pool 4, so 4*4*16 = 256 flattened features:
    # conv0 5*5*1*6 = 150, conv1 5*5*6*16 = 2400, dense0 256*120 = 30720, dense1 120*84 = 10080,
    # dense2 84*10 = 840; total 44,190.
    count, shapes = _count(m.LeNet5(), (28, 28, 1))
    assert count == 44_190
    assert shapes["params"]["dense0"]["kernel"] == (256, 120)


# --- architecture ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "mlp_relu", "mlp_bias"])
def test_output_shape(name):
    model, variables, x = _setup(name)
    out = model.apply(variables, x)
    chex.assert_shape(out, (N_SAMPLES, 10))
    chex.assert_type(out, jnp.float64)


def test_output_shape_num_classes_via_make_model():
    for name, shape in [("lenet300", (28, 28, 1)), ("lenet5", (32, 32, 3)), ("mlp", (5,))]:
        model = m.make_model(name, num_classes=7, widths=(6,))
        out = jax.eval_shape(
            lambda k, model=model, shape=shape: model.apply(
                m.init(model, k, shape), jnp.zeros((4, *shape))
            ),
            jax.random.key(0),
        )
        assert out.shape == (4, 7), name


def test_lenet300_flattens_nhwc_like_numpy_reference():
    model, variables, x = _setup("lenet300")
    p = jax.tree_util.tree_map(np.asarray, variables["params"])
    h = np.asarray(x).reshape(N_SAMPLES, -1)  # row-major NHWC flattening
    h = np.maximum(h @ p["dense0"]["kernel"], 0)
    h = np.maximum(h @ p["dense1"]["kernel"], 0)
    expected = h @ p["dense2"]["kernel"]
    out = model.apply(variables, x)
    chex.assert_trees_all_close(out, expected, rtol=1e-10, atol=1e-12)
    assert set(p) == {"dense0", "dense1", "dense2"}
    # flattening is the model's own: pre-flattened and NHWC batches give the same outputs
    chex.assert_trees_all_close(model.apply(variables, x.reshape(N_SAMPLES, -1)), out)
    # with several channels the order matters: NHWC row-major (channels fastest), not NCHW
    variables3 = _numpy_params(model, (4, 4, 3), jnp.float64, bias_std=0.0)
    x3 = np.random.default_rng(3).standard_normal((2, 4, 4, 3))
    p3 = jax.tree_util.tree_map(np.asarray, variables3["params"])
    h3 = np.maximum(x3.reshape(2, 48) @ p3["dense0"]["kernel"], 0)
    expected3 = np.maximum(h3 @ p3["dense1"]["kernel"], 0) @ p3["dense2"]["kernel"]
    chex.assert_trees_all_close(model.apply(variables3, x3), expected3, rtol=1e-10, atol=1e-12)


def _np_conv_valid(h, kernel):
    """Cross-correlation, VALID, NHWC x HWIO (flax convention), in numpy."""
    kh, kw = kernel.shape[:2]
    windows = sliding_window_view(h, (kh, kw), axis=(1, 2))  # (N, H', W', C, kh, kw)
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel)


def _np_pool(h):
    n, height, width, c = h.shape
    h = h[:, : height // 2 * 2, : width // 2 * 2]
    return h.reshape(n, height // 2, 2, width // 2, 2, c).mean(axis=(2, 4))


def test_lenet5_matches_numpy_reference():
    model, variables, x = _setup("lenet5")
    p = jax.tree_util.tree_map(np.asarray, variables["params"])
    relu = functools.partial(np.maximum, 0)
    h = _np_pool(relu(_np_conv_valid(np.asarray(x), p["conv0"]["kernel"])))
    h = _np_pool(relu(_np_conv_valid(h, p["conv1"]["kernel"])))
    h = h.reshape(N_SAMPLES, -1)
    h = relu(h @ p["dense0"]["kernel"])
    h = relu(h @ p["dense1"]["kernel"])
    expected = h @ p["dense2"]["kernel"]
    chex.assert_trees_all_close(model.apply(variables, x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "mlp_relu", "mlp_identity"])
def test_homogeneous_models_have_no_biases(name):
    _, variables, _ = _setup(name, random_biases=False)
    leaf_names = [path[-1].key for path, _ in jax.tree_util.tree_flatten_with_path(variables)[0]]
    assert leaf_names and set(leaf_names) == {"kernel"}


def test_make_model():
    lenet300 = m.make_model("lenet300", num_classes=7)
    assert isinstance(lenet300, m.MLP) and tuple(lenet300.widths) == (300, 100, 7)
    lenet5 = m.make_model("lenet5", activation="tanh")
    assert isinstance(lenet5, m.LeNet5) and lenet5.activation == "tanh"
    mlp = m.make_model("mlp", 3, widths=(20, 30), activation="identity", use_bias=True)
    assert tuple(mlp.widths) == (20, 30, 3)
    assert mlp.activation == "identity" and mlp.use_bias
    assert m.make_model("mlp").homogeneity_degree == 3


def test_make_model_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="resnet") as info:
        m.make_model("resnet")
    for choice in ("lenet300", "lenet5", "mlp"):
        assert choice in str(info.value)


@pytest.mark.parametrize(
    "model", [m.MLP(widths=(3, 2), activation="gelu"), m.LeNet5(activation="gelu")]
)
def test_unknown_activation_raises(model):
    shape = (5,) if isinstance(model, m.MLP) else (12, 12, 1)
    with pytest.raises(ValueError, match="gelu") as info:
        m.init(model, jax.random.key(0), shape)
    for choice in m.ACTIVATIONS:
        assert choice in str(info.value)


def test_unknown_init_scheme_raises():
    with pytest.raises(ValueError, match="orthogonal") as info:
        m.init(m.MLP(widths=(3,)), jax.random.key(0), (4,), scheme="orthogonal")
    for choice in m.INIT_SCHEMES:
        assert choice in str(info.value)


# --- average pooling ------------------------------------------------------------------------------


@jax.jit
def _pools_and_grads(h, weights):
    def reference(h):
        return nn.avg_pool(h, (2, 2), strides=(2, 2), padding="VALID")

    grad_ours = jax.grad(lambda h: jnp.sum(weights * m.avg_pool_2x2(h)))(h)
    grad_ref = jax.grad(lambda h: jnp.sum(weights * reference(h)))(h)
    return m.avg_pool_2x2(h), reference(h), grad_ours, grad_ref


@pytest.mark.parametrize("shape", [(2, 6, 8, 3), (2, 7, 9, 1)])
def test_avg_pool_2x2_matches_flax_value_and_gradient(shape):
    rng = np.random.default_rng(4)
    h = rng.standard_normal(shape)
    weights = rng.standard_normal((shape[0], shape[1] // 2, shape[2] // 2, shape[3]))
    ours, ref, grad_ours, grad_ref = _pools_and_grads(h, weights)
    chex.assert_shape(ours, weights.shape)
    chex.assert_trees_all_close(ours, ref, rtol=1e-12, atol=1e-14)
    chex.assert_trees_all_close(grad_ours, grad_ref, rtol=1e-12, atol=1e-14)
    # each input pixel of a kept 2x2 window gets a quarter of its window's weight
    np.testing.assert_allclose(grad_ours[:, 0, 0], weights[:, 0, 0] / 4, rtol=1e-12)
    # odd trailing rows/columns are dropped (VALID), so their gradient is exactly zero
    assert np.all(np.asarray(grad_ours)[:, shape[1] // 2 * 2 :] == 0)
    assert np.all(np.asarray(grad_ours)[:, :, shape[2] // 2 * 2 :] == 0)


# --- homogeneity (chex property tests) ------------------------------------------------------------


class HomogeneityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(name, name) for name in HOMOGENEOUS])
    def test_homogeneous_float64(self, name):
        model, variables, x = _setup(name)
        degree = model.homogeneity_degree
        self.assertEqual(degree, EXPECTED_DEGREE[name])
        f0, outputs = _scaled_outputs(self.variant(model.apply), variables, x)
        self.assertLess(_deviation(f0, outputs, degree), _homogeneity_tol(jnp.float64, degree))
        # the check pins the degree: L ± 1 is off by a factor 10 at α = 1e±1
        self.assertGreater(_deviation(f0, outputs, degree - 1), 0.5)
        self.assertGreater(_deviation(f0, outputs, degree + 1), 0.5)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*[(name, name) for name in HOMOGENEOUS])
    def test_homogeneous_float32(self, name):
        model, variables, x = _setup(name, "float32")
        apply_fn = self.variant(model.apply)
        chex.assert_type(apply_fn(variables, x), jnp.float32)
        degree = model.homogeneity_degree
        deviation = homogeneity_deviation(apply_fn, variables, x, degree)
        self.assertLess(deviation, _homogeneity_tol(jnp.float32, degree))

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(name, name) for name in NON_HOMOGENEOUS])
    def test_non_homogeneous_fails_the_same_check(self, name):
        model, variables, x = _setup(name)
        self.assertIsNone(model.homogeneity_degree)
        f0, outputs = _scaled_outputs(self.variant(model.apply), variables, x)
        # no degree at all makes them homogeneous, in particular not len(widths) = 3
        for degree in range(6):
            self.assertGreater(_deviation(f0, outputs, degree), 1e-3)

    def test_zero_biases_are_still_homogeneous(self):
        # Why test_non_homogeneous_fails_the_same_check draws random biases: at init (b = 0) a
        # biased ReLU net computes the same function as the bias-free one, and αb = 0 stays 0.
        model, variables, x = _setup("mlp_bias", random_biases=False)
        self.assertIn("bias", variables["params"]["dense0"])
        deviation = homogeneity_deviation(jax.jit(model.apply), variables, x, len(model.widths))
        self.assertLess(deviation, _homogeneity_tol(jnp.float64, 3))

    def test_lenet5_tanh_has_no_degree(self):
        self.assertIsNone(m.LeNet5(activation="tanh").homogeneity_degree)
        self.assertIsNone(m.LeNet300100(activation="tanh").homogeneity_degree)
        self.assertEqual(m.LeNet5(activation="identity").homogeneity_degree, 5)
        self.assertEqual(m.MLP(widths=(4,) * 6).homogeneity_degree, 6)


# --- Euler's identity J_θ f · θ = L f -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOMOGENEOUS))
def test_euler_identity(name):
    model, variables, x = _setup(name)
    degree = model.homogeneity_degree
    f, jtheta = _euler_terms(model, variables, x)
    assert euler_deviation(f, jtheta, degree) < _homogeneity_tol(jnp.float64, degree)
    # the identity pins the degree: L + 1 is off by a relative 1/(L + 1)
    assert euler_deviation(f, jtheta, degree + 1) > 0.1


@pytest.mark.parametrize("name", sorted(NON_HOMOGENEOUS))
def test_euler_identity_fails_without_homogeneity(name):
    model, variables, x = _setup(name)
    f, jtheta = _euler_terms(model, variables, x)
    for degree in range(1, 6):
        assert euler_deviation(f, jtheta, degree) > 1e-3


# --- initialisation schemes -----------------------------------------------------------------------


def _expected_std(scheme, fan_in, fan_out):
    return {
        "kaiming": np.sqrt(2 / fan_in),
        "xavier": np.sqrt(2 / (fan_in + fan_out)),
        "authors": np.sqrt(2 / fan_in),  # their kaiming_normal_ (2024-01-21 to HEAD)
        "authors-early": np.sqrt(2) * np.sqrt(2 / (fan_in + fan_out)),  # = sqrt(4/(fan_in + fan_out))
    }[scheme]


def _check_scheme_stats(kernels, scheme):
    """Every kernel's empirical std within 6 standard errors of the scheme's, PyTorch fans:
    dense fan_in/fan_out = in/out features; conv fan_in = kh*kw*in_ch, fan_out = kh*kw*out_ch."""
    for name, w in kernels.items():
        receptive = int(np.prod(w.shape[:-2]))
        fan_in, fan_out = receptive * w.shape[-2], receptive * w.shape[-1]
        expected = _expected_std(scheme, fan_in, fan_out)
        tol = 6 / np.sqrt(2 * w.size)  # relative standard error of a sample std: 1/sqrt(2n)
        assert abs(w.std() / expected - 1) < tol, (scheme, name, w.std(), expected)
        assert abs(w.mean()) < 6 * expected / np.sqrt(w.size), (scheme, name)


@functools.cache
def _all_schemes_init(model, shape, seed=6, dtype_name="float32"):
    """{scheme: variables} from one jitted call of m.init per scheme (one compilation for all).

    rbg keys: a scheme's statistics do not depend on the PRNG, and threefry compiles for seconds
    per kernel shape on CPU (the default threefry key is covered by test_init_keys).
    """
    fn = jax.jit(
        lambda key: {
            scheme: m.init(model, key, shape, scheme=scheme, dtype=jnp.dtype(dtype_name))
            for scheme in m.INIT_SCHEMES
        }
    )
    return fn(jax.random.key(seed, impl="rbg"))


def _kernels(model, shape, scheme, seed=6):
    variables = _all_schemes_init(model, shape, seed)[scheme]
    assert all(set(layer) == {"kernel"} for layer in variables["params"].values())
    return {
        name: np.asarray(layer["kernel"], np.float64) for name, layer in variables["params"].items()
    }


def test_init_schemes_lenet300():
    stds = {}
    for scheme in sorted(m.INIT_SCHEMES):
        kernels = _kernels(m.LeNet300100(), (28, 28, 1), scheme)
        _check_scheme_stats(kernels, scheme)
        w = kernels["dense0"]  # the 784 x 300 layer: 235,200 draws, tight checks
        assert w.shape == (784, 300)
        expected = _expected_std(scheme, 784, 300)
        stds[scheme] = w.std()
        assert abs(stds[scheme] / expected - 1) < 0.02, (scheme, stds[scheme], expected)
        assert abs(w.mean()) < 5 * expected / np.sqrt(w.size)
        # untruncated normal: ~109 of 235,200 draws beyond 3.5 sigma; truncated_normal has none
        # beyond 2 sigma (of the untruncated scale)
        assert np.abs(w).max() / stds[scheme] > 3.5
        assert abs(np.mean(np.abs(w) > 2 * stds[scheme]) - 0.0455) < 0.003
    assert stds["xavier"] < stds["kaiming"] < stds["authors-early"]
    np.testing.assert_allclose(stds["authors-early"] / stds["xavier"], np.sqrt(2), rtol=0.02)
    np.testing.assert_allclose(stds["authors"], stds["kaiming"], rtol=0.02)


def test_init_schemes_lenet5_conv_fans():
    for scheme in sorted(m.INIT_SCHEMES):
        kernels = _kernels(m.LeNet5(), (32, 32, 3), scheme)
        assert kernels["conv1"].shape == (5, 5, 6, 16)
        _check_scheme_stats(kernels, scheme)
    # conv1 under xavier: fans 150/400 give std sqrt(2/550) = 0.060; channel-only fans (6/16)
    # would give 0.30, and fan_out = out_ch only (16) 0.11: the check above separates them
    w = _kernels(m.LeNet5(), (32, 32, 3), "xavier")["conv1"]
    assert abs(w.std() / np.sqrt(2 / 550) - 1) < 0.15


def test_init_keys():
    # the default (threefry) keys, typed and legacy uint32
    model, shape = TINY
    a = m.init(model, jax.random.key(0), shape)
    chex.assert_trees_all_equal(a, m.init(model, jax.random.key(0), shape))
    chex.assert_trees_all_equal(a, m.init(model, jax.random.PRNGKey(0), shape))
    b = m.init(model, jax.random.key(1), shape)
    chex.assert_trees_all_equal_structs(a, b)
    for layer in a["params"]:
        assert not np.allclose(a["params"][layer]["kernel"], b["params"][layer]["kernel"])
    # layers of equal shape get independent draws, not one key reused
    kernels = [np.asarray(a["params"][f"dense{i}"]["kernel"]) for i in range(3)]
    assert not np.allclose(kernels[0], kernels[1]) and not np.allclose(kernels[1], kernels[2])


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_init_tiny_biased_mlp(dtype_name):
    model, shape = TINY
    inits = _all_schemes_init(model, shape, 3, dtype_name)
    assert m.num_params(inits["kaiming"]) == 3 * (20 * 20 + 20) == 1260
    assert isinstance(m.num_params(inits["kaiming"]), int)
    for scheme, variables in inits.items():
        params = variables["params"]
        assert set(params) == {"dense0", "dense1", "dense2"}
        for layer in params.values():
            assert set(layer) == {"kernel", "bias"}
            chex.assert_type(layer["kernel"], jnp.dtype(dtype_name))
            assert np.all(np.asarray(layer["kernel"]) != 0), scheme
            # biases start at zero, as in both papers, in the requested dtype
            np.testing.assert_array_equal(layer["bias"], 0)
            chex.assert_type(layer["bias"], jnp.dtype(dtype_name))


# --- scale ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1e-3, 0.5, 1.0, 7, np.float64(30.0)])
def test_scale_scales_every_leaf(alpha):
    _, variables, _ = _setup("mlp_bias")  # kernels and (random, non-zero) biases
    scaled = m.scale(variables, alpha)
    chex.assert_trees_all_equal_structs(scaled, variables)
    leaves, scaled_leaves = jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves(scaled)
    assert len(leaves) == 6
    for leaf, scaled_leaf in zip(leaves, scaled_leaves):
        chex.assert_type(scaled_leaf, jnp.float64)
        np.testing.assert_allclose(np.asarray(scaled_leaf) / np.asarray(leaf), alpha, rtol=1e-14)


@pytest.mark.parametrize("alpha", [0.5, 7, 1e3])
def test_scale_keeps_float32_with_python_alpha(alpha):
    _, variables32, _ = _setup("mlp_relu", "float32")
    for leaf, scaled in zip(
        jax.tree_util.tree_leaves(variables32),
        jax.tree_util.tree_leaves(m.scale(variables32, alpha)),
    ):
        chex.assert_type(scaled, jnp.float32)
        np.testing.assert_allclose(np.asarray(scaled), alpha * np.asarray(leaf), rtol=1e-6)


def test_scale_keeps_float32_with_numpy_alpha():
    _, variables32, _ = _setup("mlp_relu", "float32")
    for alpha in np.logspace(-1, 1, 3):
        for leaf in jax.tree_util.tree_leaves(m.scale(variables32, alpha)):
            chex.assert_type(leaf, jnp.float32)


@pytest.mark.parametrize("alpha", [0.0, -1.0, -1e-9, float("nan"), float("inf"), -float("inf")])
def test_scale_rejects_bad_alpha(alpha):
    _, variables, _ = _setup("mlp_relu")
    with pytest.raises(ValueError, match="alpha"):
        m.scale(variables, alpha)


def test_authors_scheme_is_their_current_kaiming_normal():
    # their code uses kaiming_normal_ from 2024-01-21 to HEAD: "authors" draws exactly "kaiming"
    key = jax.random.key(3)
    a = m.init(m.MLP(widths=(5, 4)), key, (3,), "authors")
    k = m.init(m.MLP(widths=(5, 4)), key, (3,), "kaiming")
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(k)):
        np.testing.assert_array_equal(x, y)
