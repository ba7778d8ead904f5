"""beyond/init-quality: its predictors against direct float64 computations on a tiny model, the
scales it draws, steps to a target, the correlation table on records with a known relation, and
the claim's rule."""

import types

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gzone import curvature, engine, models, objective, studies
from gzone.engine import setup as engine_setup
from gzone.engine.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from gzone.studies.beyond import init_quality as iq

MODEL = models.make_model("mlp", 3, widths=(5,))
X = jax.random.normal(jax.random.key(0), (12, 4), jnp.float64)
Y = jnp.arange(12) % 3


def test_the_predictors_against_dense_matrices():
    params = models.init(MODEL, jax.random.key(1), (4,), dtype=jnp.float64)
    flat, unravel = ravel_pytree(params)
    size = flat.size
    basis = jnp.linalg.qr(jax.random.normal(jax.random.key(2), (size, 4), jnp.float64))[0]
    setup = types.SimpleNamespace(model=MODEL, x=X, y=Y)
    config = types.SimpleNamespace(lanczos_iters=size, ntk_samples=5)
    batches = curvature.prepare_batches(MODEL.apply, params, X, Y, 5, 4)
    got = iq.predictors(setup, config, params, basis, batches)
    loss = lambda p: objective.cross_entropy(MODEL.apply(unravel(p), X), Y)  # noqa: E731
    hessian = jax.hessian(loss)(flat)
    jac = jax.jacobian(lambda p: MODEL.apply(unravel(p), X).reshape(-1))(flat)
    probs = jax.nn.softmax(MODEL.apply(params, X))
    blocks = jax.scipy.linalg.block_diag(*[jnp.diag(p) - jnp.outer(p, p) for p in probs]) / len(X)
    gterm = jac.T @ blocks @ jac
    norm = lambda m: float(jnp.max(jnp.abs(jnp.linalg.eigvalsh(m))))  # noqa: E731
    np.testing.assert_allclose(got["sharpness"], norm(hessian), rtol=1e-8)
    np.testing.assert_allclose(got["g_over_hterm"], norm(gterm) / norm(hessian - gterm), rtol=1e-7)
    eig = jnp.linalg.eigvalsh(basis.T @ hessian @ basis)
    np.testing.assert_allclose(got["pc_hessian"], float(eig.sum() / jnp.linalg.norm(eig)), rtol=1e-8)
    np.testing.assert_allclose(got["gradient_norm"], float(jnp.linalg.norm(jax.grad(loss)(flat))),
                               rtol=1e-10)
    ntk = jac[:15] @ jac[:15].T  # 5 samples x 3 classes
    eig = np.linalg.eigvalsh(np.asarray(ntk))
    np.testing.assert_allclose(got["ntk_condition"], eig[-1] / eig[0], rtol=1e-6)
    entropy = -jnp.sum(probs * jnp.log(probs), -1).mean()
    np.testing.assert_allclose(got["entropy"], float(entropy), rtol=1e-10)
    assert got["flags"] == []


def test_a_singular_ntk_has_no_condition_number():
    assert iq.ntk_condition(np.array([0.0, 1.0, 2.0])) is None
    assert iq.ntk_condition(np.array([-1e-12, 1.0])) is None
    assert iq.ntk_condition(np.array([0.5, 2.0])) == 4.0


def test_scales_are_log_uniform_and_reproducible():
    config = types.SimpleNamespace(alpha_min=0.1, alpha_max=10.0)
    drawn = [iq.scale_of(config, s) for s in range(200)]
    assert drawn == [iq.scale_of(config, s) for s in range(200)]
    assert 0.1 <= min(drawn) and max(drawn) <= 10.0
    logs = np.log10(drawn)
    assert abs(np.mean(logs)) < 0.15 and np.mean(logs < 0) > 0.35  # both sides of alpha = 1
    assert engine_setup.STREAMS["init-scale"] not in [v for k, v in engine_setup.STREAMS.items()
                                                      if k != "init-scale"]


def test_steps_to_target():
    h = {"step": np.array([0, 5, 10]), "train_accuracy": np.array([0.1, 0.6, np.nan])}
    assert iq.steps_to(h, 0.5) == 5 and iq.steps_to(h, 0.9) is None


def test_the_table_ranks_a_known_relation():
    rng = np.random.default_rng(0)
    records = []
    for s in range(30):
        acc = float(rng.uniform())
        init = {"kind": "init", "seed": s, "alpha": 1.0, **{p: float(rng.normal()) for p in iq.PREDICTORS}}
        init["entropy"] = acc ** 3  # monotone in the accuracy: rho = 1
        init["loss"] = -acc  # rho = -1
        records += [init, {"kind": "run", "seed": s, "final_test_accuracy": acc,
                           "steps_to_target": 100 * (1 - acc)}]
    rows = iq.summarize(records)
    first = [r for r in rows if r["target"] == "final_test_accuracy"][:2]
    assert {r["predictor"] for r in first} == {"entropy", "loss"}
    assert [abs(r["rho"]) for r in first] == [1.0, 1.0]
    steps = {r["predictor"]: r for r in rows if r["target"] == "steps_to_target"}
    assert steps["entropy"]["rho"] == -1.0 and steps["entropy"]["n"] == 30


def _row(predictor, rho, interval):
    return {"target": "final_test_accuracy", "predictor": predictor, "rho": rho,
            "interval": interval, "p_value": 0.01, "n": 30}


def test_the_claim_rule():
    check = {c.id: c for c in studies.get("beyond/init-quality").claims}["better-than-curvature"].check
    assert check([_row("pc_hessian", 0.2, [0.0, 0.4]), _row("entropy", -0.8, [-0.9, -0.6])]).verdict == REPRODUCED
    assert check([_row("pc_hessian", 0.8, [0.6, 0.9]), _row("entropy", -0.3, [-0.5, 0.1])]).verdict == NOT_REPRODUCED
    assert check([_row("pc_hessian", 0.5, [0.2, 0.7]), _row("entropy", 0.6, [0.3, 0.8])]).verdict == INCONCLUSIVE


def test_bad_configs_name_the_field(tmp_path):
    study = studies.get("beyond/init-quality")
    for overrides, name in (({"n_inits": 2}, "n_inits"), ({"target_accuracy": 1.0}, "target_accuracy"),
                            ({"ntk_samples": 10 ** 6}, "ntk_samples")):
        try:
            engine.run(study, engine.make_config(study, "tiny", **overrides), tmp_path / "out")
        except engine.ConfigError as error:
            assert error.name == name
        else:
            raise AssertionError(f"{overrides} was accepted")
        assert not (tmp_path / "out").exists()
