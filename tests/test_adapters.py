"""Your model in gzone (issue 20): the adapters (Flax linen with BatchNorm in both modes and
biases, Flax NNX with LayerNorm and BatchNorm, a plain function) and ``gzone.diagnose`` against
dense float64 references on tiny models — the projected terms against ``jax.hessian`` and an
explicit Jacobian, the spectral norms and sharpness against ``eigvalsh``, the per-layer blocks
against slices of the dense Hessian — plus the state left untouched, batch statistics
independent of the chunk size, the determinism check and the one-line errors."""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

import gzone
from gzone import adapters, diagnosis, models, objective, random_model, subspace, training
from gzone.adapters import ModelError

N, K = 24, 3


@pytest.fixture(scope="module")
def data():
    x = jax.random.normal(jax.random.key(0), (N, 3, 3, 1), jnp.float64)
    return x, jnp.arange(N) % K


class ConvBN(nn.Module):
    """Conv (bias) -> BatchNorm -> ReLU -> Dropout -> Dense -> BatchNorm -> Dense (bias)."""

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Conv(2, (2, 2))(x)))
        x = nn.Dropout(0.5, deterministic=not train)(x).reshape(x.shape[0], -1)
        x = nn.BatchNorm(use_running_average=not train)(nn.Dense(4)(x))
        return nn.Dense(K)(jnp.tanh(x))


class NNXNet(nnx.Module):
    """Linear -> LayerNorm -> GELU -> Dropout -> Linear -> BatchNorm -> Linear."""

    def __init__(self, rngs):
        kw = {"rngs": rngs, "param_dtype": jnp.float64}
        self.l1 = nnx.Linear(9, 5, **kw)
        self.ln = nnx.LayerNorm(5, **kw)
        self.drop = nnx.Dropout(0.3, rngs=rngs)
        self.l2 = nnx.Linear(5, 4, **kw)
        self.bn = nnx.BatchNorm(4, **kw)
        self.l3 = nnx.Linear(4, K, **kw)

    def __call__(self, x):
        h = self.drop(jax.nn.gelu(self.ln(self.l1(x.reshape(x.shape[0], -1)))))
        return self.l3(jax.nn.relu(self.bn(self.l2(h))))


def _host(tree):
    """Host copies of a state's leaves (PRNG keys as their data)."""
    return jax.tree_util.tree_map(
        lambda a: np.asarray(jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key)
                            else a), tree)


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating)
                                  else a, tree)


def linen_model(data, batch_norm="eval"):
    net = ConvBN()
    variables = _f64(net.init({"params": jax.random.key(1)}, data[0][:1], train=False))
    # running statistics away from their defaults, so "eval" and "batch" differ
    variables["batch_stats"] = jax.tree_util.tree_map(lambda a: a + 0.3, variables["batch_stats"])
    return adapters.linen(net, variables, batch_norm=batch_norm, call_kwargs={"train": True})


def nnx_model(batch_norm="eval"):
    return adapters.nnx(NNXNet(nnx.Rngs(2)), batch_norm=batch_norm)


def function_model():
    def apply(params, x):
        h = jnp.tanh(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"])
        return h @ params["w2"]

    keys = jax.random.split(jax.random.key(3), 2)
    params = {"w1": jax.random.normal(keys[0], (9, 6), jnp.float64) / 2,
              "b1": jnp.full((6,), 0.1, jnp.float64),
              "w2": jax.random.normal(keys[1], (6, K), jnp.float64) / 2}
    return adapters.function(apply, params)


#: the models diagnosed in full (each compiles its own programs: a few seconds apiece); the
#: other modes (linen "eval", nnx "batch") are checked against Flax at the level of apply, the
#: plain-function adapter by the README's snippet and the command's test (tests/test_examples.py)
MODELS = {"linen-batch": lambda d: linen_model(d, "batch"), "nnx-eval": lambda d: nnx_model()}


def dense_terms(model, x, y, temperature=1.0):
    """(H, G-term, H-term) of the full-batch loss, dense: jax.hessian and an explicit Jacobian."""
    flat, unravel = ravel_pytree(model.params)

    def logits(theta):
        return model.apply(unravel(theta), x)

    @jax.jit
    def terms(flat, temperature):
        hessian = jax.hessian(lambda th: objective.cross_entropy(logits(th), y, temperature))(flat)
        jac = jax.jacfwd(logits)(flat) / temperature  # (N, K, P)
        p = jax.nn.softmax(logits(flat) / temperature, -1)
        m = jax.vmap(lambda q: jnp.diag(q) - jnp.outer(q, q))(p)
        gterm = jnp.einsum("nkp,nkl,nlq->pq", jac, m, jac) / len(x)
        return hessian, gterm, hessian - gterm

    return terms(flat, jnp.asarray(temperature, flat.dtype))


def _pc(matrix):
    eigs = np.linalg.eigvalsh(np.asarray((matrix + matrix.T) / 2))
    return eigs.sum() / np.sqrt((eigs**2).sum()), np.mean(eigs > 0), eigs


def assert_convexity(measured, eigs):
    """The fraction of positive eigenvalues, an exactly-zero eigenvalue (a direction BatchNorm
    cancels) counted either way: between the strictly and the weakly positive fractions."""
    tol = 1e-9 * np.abs(eigs).max()
    assert np.mean(eigs > tol) - 1e-12 <= measured <= np.mean(eigs > -tol) + 1e-12


@pytest.fixture(scope="module")
def diagnosed(data):
    """name -> (bound model, diagnosis) of every tiny model, exact Lanczos (iters >= P)."""
    out = {}
    for name, make in MODELS.items():
        model = make(data)
        if name == "nnx-eval":  # the user's module itself, to check it is left as it was
            MODULES[name] = NNXNet(nnx.Rngs(2))
            model = adapters.nnx(MODULES[name])
            STATES["module"] = _host(nnx.state(MODULES[name]))
        size = adapters.num_params(model.params)
        probed = {"temperatures": [0.5], "alphas": [2.0]} if name in PROBED else {}
        found = gzone.diagnose(model, *data, key=jax.random.key(7), dim=6,
                               lanczos_iters=min(size, 40), probes=12, exact_block=40, **probed)
        out[name] = (model.bind(data[0]), found)
        STATES[name] = _host(out[name][0].state)
    return out


#: the states of the diagnosed models (bound) and of the user's nnx module, as diagnosed
STATES: dict = {}
MODULES: dict = {}


#: the models whose diagnosis also probes a temperature and an alpha
PROBED = ("linen-batch",)


@pytest.mark.parametrize("name", list(MODELS))
def test_diagnosis_equals_dense_float64_references(diagnosed, data, name):
    model, found = diagnosed[name]
    x, y = data
    for t, a in ((1.0, 1.0), (0.5, 1.0), (1.0, 2.0))[:3 if name in PROBED else 1]:
        point = model if a == 1.0 else adapters.Model(model.fn, models.scale(model.params, a),
                                                       model.state, model.name)
        terms = dict(zip(("hessian", "gterm", "hterm"), dense_terms(point, x, y, t)))
        basis = subspace.orthonormal_basis(jax.random.split(jax.random.key(7), 3)[0],
                                           adapters.num_params(model.params), 6, jnp.float64)
        for r in found.select("projected", temperature=t, alpha=a):
            pc, _, eigs = _pc(basis.T @ terms[r["term"]] @ basis)
            assert r["positive_curvature"] == pytest.approx(pc, rel=1e-8, abs=1e-10)
            assert_convexity(r["local_convexity"], eigs)
        (whole,) = found.select("model", temperature=t, alpha=a)
        norms = {k: np.abs(_pc(v)[2]).max() for k, v in terms.items()}
        assert whole["g_norm"] == pytest.approx(norms["gterm"], rel=1e-7)
        assert whole["hterm_norm"] == pytest.approx(norms["hterm"], rel=1e-7)
        assert whole["sharpness"] == pytest.approx(norms["hessian"], rel=1e-7)
        assert whole["sharpness_residual"] < 1e-6 * norms["hessian"]
        assert whole["in_zone"] == bool(norms["gterm"] > norms["hterm"])
        exact = _pc(terms["hessian"])[0]
        assert abs(whole["trace_ratio"] - exact) <= 5 * whole["trace_ratio_stderr"] + 1e-9
        flat, unravel = ravel_pytree(point.params)
        loss, grad = jax.value_and_grad(
            lambda th, point=point, unravel=unravel, t=t:
            objective.cross_entropy(point.apply(unravel(th), x), y, t))(flat)
        p = jax.nn.softmax(point.apply(point.params, x) / t, -1)
        assert whole["loss"] == pytest.approx(float(loss), rel=1e-10)
        assert whole["gradient_norm"] == pytest.approx(float(jnp.linalg.norm(grad)), rel=1e-9)
        assert whole["gamma_p"] == pytest.approx(float(random_model.gamma_p(p)), rel=1e-9)
        assert whole["entropy"] == pytest.approx(float(jnp.mean(-jnp.sum(p * jnp.log(p), -1))), rel=1e-9)
        assert whole["n_samples"] == N and whole["dtype"] == "float64"


@pytest.mark.parametrize("name", list(MODELS))
def test_per_layer_blocks_equal_slices_of_the_dense_hessian(diagnosed, data, name):
    model, found = diagnosed[name]
    hessian = dense_terms(model, *data)[0]
    layers = found.select("layer")
    assert [r["layer"] for r in layers] == [n for n, _ in diagnosis.layer_blocks(model.params)]
    for (_, index), r in zip(diagnosis.layer_blocks(model.params), layers):
        pc, _, eigs = _pc(hessian[np.ix_(index, index)])
        assert r["block_size"] == len(index) and r["top_eigenvalue"] == pytest.approx(eigs[-1], rel=1e-8, abs=1e-12)
        if r["method"] == "exact":
            assert r["positive_curvature"] == pytest.approx(pc, rel=1e-8)
            assert_convexity(r["local_convexity"], eigs)
        else:  # Lanczos to convergence, Hutchinson within five standard errors
            assert len(index) > 40 and r["top_eigenvalue_residual"] < 1e-6
            assert abs(r["positive_curvature"] - pc) <= 5 * r["positive_curvature_stderr"]
    assert {r["method"] for r in found.select("layer")} >= {"exact"}


@pytest.mark.parametrize("name", ["linen-eval", "nnx-batch", "function"])
def test_the_other_adapters_project_like_the_dense_hessian(data, name):
    """The modes not diagnosed in full: the projected H, G-term and H-term of their apply against
    the dense float64 references (the rest of diagnose is adapter-independent)."""
    from gzone import curvature

    x, y = data
    model = {"linen-eval": lambda: linen_model(data), "nnx-batch": lambda: nnx_model("batch"),
             "function": function_model}[name]().bind(x, 7)
    basis = subspace.orthonormal_basis(jax.random.key(4), adapters.num_params(model.params), 4,
                                       jnp.float64)
    found = curvature.projected(model.apply, model.params, basis, x, y)
    for term, dense in zip(("hessian", "gterm", "hterm"), dense_terms(model, x, y)):
        np.testing.assert_allclose(getattr(found, term), basis.T @ dense @ basis, rtol=1e-8,
                                   atol=1e-10)


def test_linen_layers_are_named_by_module_and_nnx_by_attribute(diagnosed):
    assert [r["layer"] for r in diagnosed["linen-batch"][1].select("layer")] == [
        "BatchNorm_0", "BatchNorm_1", "Conv_0", "Dense_0", "Dense_1"]
    assert [r["layer"] for r in diagnosed["nnx-eval"][1].select("layer")] == [
        "bn", "l1", "l2", "l3", "ln"]


def test_batch_statistics_are_those_of_the_whole_data_whatever_the_chunk_size(data):
    x, _ = data
    model = linen_model(data, "batch")
    with pytest.raises(ModelError, match=r"call model.bind\(x\) first"):
        model.apply(model.params, x)
    small, large = model.bind(x, 5), model.bind(x, 1000)
    np.testing.assert_allclose(small.apply(small.params, x), large.apply(large.params, x),
                               rtol=1e-12, atol=1e-12)
    # Flax's own train mode on the whole batch at once (dropout off) gives the same network
    net = ConvBN()

    def no_dropout(next_fun, args, kwargs, context):
        return args[0] if isinstance(context.module, nn.Dropout) else next_fun(*args, **kwargs)

    with nn.intercept_methods(no_dropout):
        reference, _ = net.apply({"params": model.params, **model.state}, x, train=True,
                                 mutable=["batch_stats"])
    np.testing.assert_allclose(small.apply(small.params, x), reference, rtol=1e-10, atol=1e-12)
    # "eval" runs on the running statistics, exactly as Flax's eval mode (dropout off)
    evaluated = linen_model(data)
    np.testing.assert_allclose(evaluated.apply(evaluated.params, x),
                               net.apply({"params": model.params, **model.state}, x, train=False),
                               rtol=1e-12, atol=1e-12)
    assert not np.allclose(evaluated.apply(model.params, x), reference)
    module = NNXNet(nnx.Rngs(2))
    module.eval()
    evaluated = nnx_model()
    np.testing.assert_allclose(evaluated.apply(evaluated.params, x), module(x), rtol=1e-12, atol=1e-12)
    nnx_small, nnx_large = nnx_model("batch").bind(x, 5), nnx_model("batch").bind(x, 1000)
    module.train()
    module.drop.deterministic = True
    np.testing.assert_allclose(nnx_small.apply(nnx_small.params, x), module(x), rtol=1e-5, atol=1e-6)
    # nnx holds BatchNorm statistics in float32
    np.testing.assert_allclose(nnx_small.apply(nnx_small.params, x),
                               nnx_large.apply(nnx_large.params, x), rtol=1e-6, atol=1e-6)
    assert "computed once and held fixed" in small.describe()["adapter_notes"][0]


def test_diagnose_and_training_leave_the_state_untouched(diagnosed, data):
    x, y = data
    for name, (model, _) in diagnosed.items():  # the fixture diagnosed these very objects
        jax.tree_util.tree_map(np.testing.assert_array_equal, STATES[name], _host(model.state))
    jax.tree_util.tree_map(np.testing.assert_array_equal, STATES["module"],
                           _host(nnx.state(MODULES["nnx-eval"])))
    model = diagnosed["nnx-eval"][0]
    result = training.train(model.apply, model.params, x, y, lr=0.1, steps=2, log_every=1,
                            sharpness=False)
    jax.tree_util.tree_map(np.testing.assert_array_equal, STATES["nnx-eval"], _host(model.state))
    jax.tree_util.tree_map(np.testing.assert_array_equal, STATES["module"],
                           _host(nnx.state(MODULES["nnx-eval"])))
    assert jax.tree_util.tree_structure(result.params) == jax.tree_util.tree_structure(model.params)
    assert not np.allclose(ravel_pytree(result.params)[0], ravel_pytree(model.params)[0])


def test_dropout_is_switched_off_and_named(data):
    x, _ = data
    assert "dropout switched off: Dropout_0" in linen_model(data).describe(x)["adapter_notes"]
    assert "dropout switched off: drop" in nnx_model().describe(x)["adapter_notes"]


def test_randomness_outside_dropout_is_refused_with_the_layer_named(data):
    x, y = data

    class Noisy(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Dense(K)(x.reshape(x.shape[0], -1))
            return h + jax.random.normal(self.make_rng("noise"), h.shape)

    variables = Noisy().init({"params": jax.random.key(0), "noise": jax.random.key(1)}, x)
    with pytest.raises(ModelError, match="Noisy draws random numbers"):
        adapters.linen(Noisy(), variables).check(x, y)

    class NoisyNNX(nnx.Module):
        def __init__(self, rngs):
            self.l = nnx.Linear(9, K, rngs=rngs)
            self.rngs = rngs

        def __call__(self, x):
            h = self.l(x.reshape(x.shape[0], -1))
            return h + jax.random.normal(self.rngs.noise(), h.shape)

    with pytest.raises(ModelError, match=r"draws random numbers at .*rngs"):
        adapters.nnx(NoisyNNX(nnx.Rngs(0, noise=1))).check(x.astype(jnp.float32), y)
    rng = np.random.default_rng(0)
    params = {"w": jnp.ones((9, K))}
    random = adapters.function(lambda p, x: x.reshape(len(x), -1) @ p["w"] * rng.random(), params)
    with pytest.raises(ModelError, match="is not deterministic"):
        random.check(x, y)


def test_bad_inputs_get_one_line_errors(data):
    x, y = data
    model = function_model()
    cases = [
        (lambda: gzone.diagnose(model, x, jax.nn.one_hot(y, K), key=jax.random.key(0)), "one-hot"),
        (lambda: gzone.diagnose(model, x, y.astype(jnp.float32), key=jax.random.key(0)), "integer class"),
        (lambda: gzone.diagnose(model, x, y + K, key=jax.random.key(0)), f"has {K} classes"),
        (lambda: gzone.diagnose(model, x, y[:5], key=jax.random.key(0)), "pass matching arrays"),
        (lambda: gzone.diagnose(model, x, y, key=jax.random.key(0), dim=10**6), "number of parameters"),
        (lambda: gzone.diagnose(model, x, y, key=jax.random.key(0), temperatures=[0]), "temperatures"),
        (lambda: gzone.diagnose(model, x, y, key=jax.random.key(0), alphas=[-1]), "alphas"),
        (lambda: gzone.diagnose((model.apply, model.params), x, y, key=jax.random.key(0)), "adapters.function"),
        (lambda: adapters.function(lambda p, x: (x.reshape(len(x), -1) @ p, 0), jnp.ones((9, K))).check(x), "tuple of 2"),
        (lambda: adapters.function(lambda p, x: x.reshape(len(x), -1) @ p, jnp.ones((9,))).check(x), "shape (N, K)"),
        (lambda: adapters.linen(ConvBN(), {}, batch_norm="eval"), "no 'params' collection"),
        (lambda: adapters.nnx(NNXNet(nnx.Rngs(0)), batch_norm="train"), "batch_norm must be one of"),
        (lambda: adapters.nnx(ConvBN()), "adapters.linen"),
        (lambda: adapters.check_temperature(0.0), "temperature must be"),
    ]
    for call, words in cases:
        with pytest.raises(ModelError, match=re.escape(words)) as error:
            call()
        assert "\n" not in str(error.value), str(error.value)


def test_the_alpha_probe_states_whether_the_model_is_homogeneous(diagnosed, data):
    assert {r["homogeneous"] for r in diagnosed["linen-batch"][1].select("model")} == {False}
    assert "caveat" in diagnosed["linen-batch"][1].select("model", alpha=2.0)[0]
    assert diagnosis.homogeneity(function_model(), data[0]) == (False, None)
    bias_free = adapters.function(models.LeNet300100().apply, models.init(
        models.LeNet300100(), jax.random.key(0), (3, 3, 1), dtype=jnp.float64))
    assert diagnosis.homogeneity(bias_free, data[0]) == (True, 3.0)


def test_models_init_sets_normalisation_scales_to_one_and_refuses_what_it_cannot():
    class Normed(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(K)(nn.BatchNorm(use_running_average=True)(nn.LayerNorm()(nn.Dense(4)(x))))

    variables = models.init(Normed(), jax.random.key(0), (5,), "xavier", jnp.float64)
    assert float(variables["params"]["LayerNorm_0"]["scale"].min()) == 1.0
    assert float(variables["batch_stats"]["BatchNorm_0"]["var"].min()) == 1.0
    out = Normed().apply(variables, jnp.ones((2, 5)) + jnp.arange(5.0))
    assert np.any(np.asarray(out) != 0)

    class Learned(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(K)(x) * self.param("temperature", nn.initializers.ones, ())

    with pytest.raises(ValueError, match="cannot initialise the parameter 'params/temperature'"):
        models.init(Learned(), jax.random.key(0), (5,))


def test_the_diagnosis_reads_in_ten_seconds_and_writes_its_records(diagnosed, tmp_path):
    found = diagnosed["linen-batch"][1]
    text = found.table()
    assert "Goldilocks zone" in text and "Eq. (6)" in text and "BatchNorm_0" in text
    assert "T probe" in text and "alpha probe" in text and len(text.splitlines()) < 25
    path = found.to_jsonl(tmp_path / "d.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == len(found.records)
    import json
    records = [json.loads(line) for line in lines]
    for field in diagnosis.FIELDS:
        assert any(field in r for r in records), field
    assert all({"seed", "dtype", "matmul_precision", "n_samples", "model"} <= set(r) for r in records)
    import matplotlib.pyplot as plt

    fig = found.figure(tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 0 and len(fig.axes) >= 3
    plt.close(fig)
