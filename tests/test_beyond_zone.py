"""The zone sweeps beyond the papers (gzone.studies.beyond._common, beyond/normalization,
beyond/inhomogeneous): the variants' BatchNorm against Flax's own and the adapters', their
curvature against jax.hessian in float64, the logits' degree under weight scaling, the zone's
shape and the claims' rules on synthetic rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gzone import adapters, curvature, engine, objective, studies
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.studies.beyond import _common as zc

X = jax.random.normal(jax.random.key(0), (12, 5), jnp.float64)
Y = jnp.arange(12) % 3


def _model(variant, widths=(4,)):
    model = zc.variant_model("mlp", variant, 3, widths)
    variables = zc.init_variables(model, jax.random.key(1), (5,), "kaiming", jnp.float64)
    return model, variables


def _loss(model, x=X, y=Y, temperature=1.0):
    return lambda v: objective.cross_entropy(model.apply(v, x) / temperature, y)


def test_batch_norm_variants_match_flax_and_the_adapters():
    """``batchnorm`` is Flax's training-mode BatchNorm (statistics of the batch, differentiated);
    ``batchnorm-held`` has its value but holds the statistics: its Hessian is the adapters' one
    with the statistics bound to the same data, not the differentiated one."""
    bn, variables = _model("batchnorm")
    held, _ = _model("batchnorm-held")
    flax_loss = lambda v: objective.cross_entropy(bn.module.apply(  # noqa: E731
        {**v, "batch_stats": zc.models.init(bn.module, jax.random.key(1), (5,), "kaiming",
                                            jnp.float64)["batch_stats"]},
        X, train=True, mutable=["batch_stats"])[0], Y)
    np.testing.assert_allclose(_loss(bn)(variables), flax_loss(variables), rtol=1e-12)
    np.testing.assert_allclose(_loss(held)(variables), flax_loss(variables), rtol=1e-12)
    flat = lambda f: jax.hessian(lambda p: f({"params": p}))(variables["params"])  # noqa: E731
    h_bn, h_flax = flat(_loss(bn)), flat(flax_loss)
    for a, b in zip(jax.tree_util.tree_leaves(h_bn), jax.tree_util.tree_leaves(h_flax)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    bound = adapters.linen(bn.module, zc.models.init(bn.module, jax.random.key(1), (5,), "kaiming",
                                                     jnp.float64), batch_norm="batch").bind(X)
    h_held = flat(_loss(held))
    h_adapter = jax.hessian(lambda p: objective.cross_entropy(bound.apply(p, X), Y))(variables["params"])
    leaves = list(zip(jax.tree_util.tree_leaves(h_held), jax.tree_util.tree_leaves(h_adapter)))
    for a, b in leaves:
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree_util.tree_leaves(h_held), jax.tree_util.tree_leaves(h_bn))) > 1e-3


@pytest.mark.parametrize("variant", ["batchnorm", "layernorm"])
def test_a_zone_point_is_the_dense_projection_in_float64(variant):
    """PC(H) of the d-plane and the full-space norms against jax.hessian and an explicit
    Gauss-Newton G-term, one chunk for BatchNorm (padded chunks of 5 for LayerNorm), at T = 2."""
    model, variables = _model(variant)
    params, unravel = jax.flatten_util.ravel_pytree(variables)
    size = params.size
    basis = jnp.linalg.qr(jax.random.normal(jax.random.key(2), (size, 4), jnp.float64))[0]
    config = type("Config", (), {"chunk_size": 5})  # chunks of 5 (padded) but for BatchNorm
    batches = curvature.prepare_batches(model.apply, variables, X, Y,
                                        zc.chunk_size_of(config, variant, len(X)), 4)
    got = zc.measure_point(model, variables, basis, batches, 2.0, iters=size)
    loss = lambda p: _loss(model, temperature=2.0)(unravel(p))  # noqa: E731
    hessian = jax.hessian(loss)(params)
    jac = jax.jacobian(lambda p: model.apply(unravel(p), X).reshape(-1) / 2.0)(params)
    probs = jax.nn.softmax(model.apply(variables, X) / 2.0)
    blocks = jax.scipy.linalg.block_diag(*[jnp.diag(p) - jnp.outer(p, p) for p in probs]) / len(X)
    gterm = jac.T @ blocks @ jac
    hd = basis.T @ hessian @ basis
    eig = jnp.linalg.eigvalsh((hd + hd.T) / 2)
    np.testing.assert_allclose(got["pc_hessian"], float(jnp.sum(eig) / jnp.linalg.norm(eig)), rtol=1e-8)
    g2 = float(jnp.max(jnp.abs(jnp.linalg.eigvalsh(gterm))))
    h2 = float(jnp.max(jnp.abs(jnp.linalg.eigvalsh(hessian - gterm))))
    np.testing.assert_allclose([got["gterm_norm"], got["hterm_norm"]], [g2, h2], rtol=1e-6)
    assert got["in_zone"] == (g2 > h2) and got["flags"] == [] and got["zone_space"] == "full"


@pytest.mark.parametrize("variant,degree", [("plain", 2), ("batchnorm", 2), ("layernorm", 2),
                                            ("tanh", None)])
def test_the_logits_degree_under_weight_scaling(variant, degree):
    """z(αθ) = α^k z(θ): k = L for the homogeneous network (2 layers here), 2 behind a
    normalisation (whatever the depth), none for tanh."""
    model, variables = _model(variant, widths=(6, 4))
    alphas = np.geomspace(0.3, 3.0, 5)
    norms = np.asarray([float(jnp.mean(jnp.linalg.norm(model.apply(zc.models.scale(variables, a), X),
                                                       axis=-1))) for a in alphas])
    fitted = zc.logit_degree(alphas, norms)
    if degree is None:
        assert abs(fitted - round(fitted)) > 0.02 or not np.allclose(
            norms / norms[2], alphas ** round(fitted), rtol=1e-3)
    elif variant == "plain":
        np.testing.assert_allclose(fitted, 3, rtol=1e-9)  # two hidden layers and the output
    else:
        np.testing.assert_allclose(fitted, degree, atol=2e-3)  # up to the norms' epsilon


def test_the_zone_shape():
    x = np.geomspace(0.01, 100, 9)
    bump = np.exp(-np.log10(x) ** 2 * 2)
    assert zc.zone_shape(x, bump, bump > 0.5)["has_zone"]
    assert not zc.zone_shape(x, bump, np.zeros(9, bool))["has_zone"]  # no G > H-term at the peak
    assert not zc.zone_shape(x, np.linspace(1, 0, 9), np.ones(9, bool))["has_zone"]  # monotone
    assert not zc.zone_shape(x, bump + 1.5, np.ones(9, bool))["has_zone"]  # ends above half
    assert zc.zone_shape(x, bump + 0.3, np.ones(9, bool))["zone"] == [0.01, 100.0]
    assert zc.zone_shape(x[:2], bump[:2], bump[:2] > 0)["has_zone"] is None


def _rows(zones):
    return [{"variant": v, "probe": p, "has_zone": z, "peak_at": 1.0, "logit_degree": 2.0,
             "pc_at_1": 0.5} for (v, p), z in zones.items()]


def test_the_claims_rules():
    norm, inh = studies.get("beyond/normalization"), studies.get("beyond/inhomogeneous")
    eliminated = {c.id: c for c in norm.claims}["batchnorm-eliminates-zone"].check
    held = {c.id: c for c in norm.claims}["held-batchnorm-eliminates-zone"].check
    robust = {c.id: c for c in inh.claims}["temperature-more-robust"].check
    rows = _rows({("bias", "alpha"): True, ("batchnorm", "alpha"): False,
                  ("batchnorm-held", "alpha"): True})
    assert eliminated(rows).verdict == REPRODUCED and held(rows).verdict == NOT_REPRODUCED
    rows[1]["has_zone"] = True
    assert eliminated(rows).verdict == NOT_REPRODUCED
    rows[0]["has_zone"] = False
    assert eliminated(rows).verdict == INCONCLUSIVE
    both = {(v, p): p == "temperature" or v == "gelu" for v in ("gelu", "tanh") for p in zc.PROBES}
    assert robust(_rows(both)).verdict == REPRODUCED
    assert robust(_rows({k: True for k in both})).verdict == NOT_REPRODUCED


@pytest.mark.parametrize("overrides,field", [({"variants": ("nope",)}, "variants"),
                                             ({"dim": 10 ** 6}, "dim"),
                                             ({"lanczos_iters": -1}, "lanczos_iters")])
def test_bad_configs_name_the_field(overrides, field, tmp_path):
    study = studies.get("beyond/normalization")
    config = engine.make_config(study, "tiny", **overrides)
    with pytest.raises(engine.ConfigError) as error:
        engine.run(study, config, tmp_path / "out")
    assert error.value.name == field and not (tmp_path / "out").exists()


def test_the_report_shows_the_summary_table(tiny, tmp_path):
    """A study with ``report_table`` has its summary rows in report.md and report.html."""
    import os

    from gzone import reproduce

    tiny("beyond/normalization")
    reproduce.reproduce("tiny", tmp_path, only="beyond/normalization",
                        runs=os.environ["GZONE_RUNS"], progress=False, echo=lambda line: None)
    md = (tmp_path / "report.md").read_text()
    assert "| variant | probe | has_zone |" in md and "| batchnorm | alpha |" in md
    assert "<table class='rows small'><tr><th>variant</th>" in (tmp_path / "report.html").read_text()
